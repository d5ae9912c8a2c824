#include <stdatomic.h>

#include "curl_cancel_internal.h"

int mw_curl_cancel_progress(void *flag_address, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
    const atomic_int *const *flag = flag_address;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return *flag && atomic_load(*flag);
}
