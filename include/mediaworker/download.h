/*
 * Downloading a file_info.url input into the job's scratch directory.
 *
 * The supervisor downloads, never a job process (job processes have no network), and libav only ever opens
 * the local copy. Only http and https, on every hop; redirects limited; every connection's address checked
 * against the network policy after DNS (see netpolicy.h); proxies from the environment ignored, since a
 * proxy would hide the real destination from that check; a size cap enforced while receiving; total and
 * low-speed timeouts.
 */
#ifndef MEDIAWORKER_DOWNLOAD_H
#define MEDIAWORKER_DOWNLOAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mediaworker/config.h"

/*
 * Downloads url to dest_path (written under a temporary name and renamed when complete). Returns 0, or:
 * MW_ERR_URL_REFUSED (scheme or address denied), MW_ERR_DOWNLOAD_TOO_LARGE, MW_ERR_DOWNLOAD_REJECTED (an
 * HTTP 4xx: retrying will not help), MW_ERR_DOWNLOAD_FAILED (timeouts, 5xx, connection errors: may be
 * retried), or AVERROR(errno) for local file errors. On failure nothing is left at dest_path and a reason
 * is written into err. bytes (may be NULL) receives the size downloaded. The transfer stops with
 * MW_ERR_DOWNLOAD_FAILED within about a second once *cancel (may be NULL) is set.
 */
int mw_download(const struct mw_config *cfg, const char *url, const char *dest_path, const atomic_int *cancel,
                int64_t *bytes, char *err, size_t err_size);

struct mw_job;

/*
 * Downloads a job's file_info.url into <scratch dir>/<job id>/input and points job->local_input at it; the
 * job then runs as if its file had been uploaded. scratch (size bytes) receives the job's scratch
 * directory, to hand to mw_download_job_cleanup whatever happens. Returns 0 or mw_download's error, with a
 * reason in err. cancel as for mw_download.
 */
int mw_download_job_input(const struct mw_config *cfg, struct mw_job *job, const atomic_int *cancel, char *scratch,
                          size_t size, char *err, size_t err_size);

/* Removes the downloaded copy and the job's scratch directory; accepts an empty scratch. */
void mw_download_job_cleanup(const char *scratch, const struct mw_job *job);

/*
 * Removes every job directory left in MW_SCRATCH_DIR (a download cut short by a killed worker: the
 * redelivery ran elsewhere, so nothing else would). Only for a worker starting up: scratch belongs to one
 * worker (docker/compose.yml, the pod's emptyDir), and a restarted container keeps it. Returns how many
 * were removed.
 */
int mw_download_scratch_sweep(const struct mw_config *cfg);

#endif
