/*
 * The worker's own HTTP endpoint (MW_HTTP_LISTEN): /metrics (Prometheus text format), /healthz (the
 * process is alive) and /readyz (the worker consumes and can run jobs; 503 with the reason otherwise,
 * and from the moment a shutdown signal arrives, so an orchestrator stops counting on it while it drains).
 *
 * libmicrohttpd serves it from one internal thread bound to the configured address only. Handlers only
 * read the metrics set; they never touch the broker or the slots.
 */
#ifndef MEDIAWORKER_HTTPD_H
#define MEDIAWORKER_HTTPD_H

#include "mediaworker/config.h"
#include "mediaworker/metrics.h"

struct mw_httpd;

/*
 * Parses "host:port" or "[v6]:port" (host may be a name, resolved once) and starts serving metrics (which
 * must outlive the server). With an empty cfg->http_listen nothing is started: returns 0 and *h NULL.
 * Returns MW_ERR_CONFIG for an address that cannot be parsed or resolved, AVERROR(EADDRINUSE) or another
 * AVERROR when it cannot listen (logged); *h is NULL then.
 */
int mw_httpd_new(struct mw_httpd **h, const struct mw_config *cfg, const struct mw_metrics *metrics);

/* Stops the server thread, closes the socket, frees, sets *h to NULL; accepts NULL. */
void mw_httpd_free(struct mw_httpd **h);

#endif
