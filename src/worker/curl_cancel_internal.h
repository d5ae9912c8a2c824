/* Stopping a libcurl transfer from another thread; shared by the reporter and the downloads. */
#ifndef MEDIAWORKER_WORKER_CURL_CANCEL_INTERNAL_H
#define MEDIAWORKER_WORKER_CURL_CANCEL_INTERNAL_H

#include <curl/curl.h>

/*
 * A CURLOPT_XFERINFOFUNCTION that stops the transfer once a flag is set. CURLOPT_XFERINFODATA is the address
 * of a `const atomic_int *` naming the flag (NULL there: never stop), so the flag may be chosen after the
 * handle is set up. libcurl calls it about once a second even when no byte moves, so a stalled peer is left
 * at once too. Needs CURLOPT_NOPROGRESS 0.
 */
int mw_curl_cancel_progress(void *flag_address, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow);

#endif
