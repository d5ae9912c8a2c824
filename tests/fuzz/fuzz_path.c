/* Fuzz target: the path policy and the other parsers of untrusted or operator text (URL masking, CIDRs). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "mediaworker/config.h"
#include "mediaworker/netpolicy.h"
#include "mediaworker/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[4096];
    char masked[1024];
    char err[256];
    const char *reason = NULL;
    struct mw_netpolicy policy;

    mw_fuzz_quiet();
    if (size >= sizeof(text))
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    mw_path_check_text(text, &reason);
    mw_path_component_ok(text);
    mw_config_mask_url(text, masked, sizeof(masked));
    mw_config_mask_url(text, masked, 7);
    mw_netpolicy_parse(&policy, text, err, sizeof(err));
    return 0;
}
