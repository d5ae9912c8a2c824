#include <stdio.h>

#include "cli_internal.h"
#include "mediaworker/netpolicy.h"
#include "mediaworker/supervisor.h"

static int run_serve(const struct mw_config *cfg, int argc, char **argv)
{
    struct mw_netpolicy policy;
    char err[256];

    (void)argc;
    (void)argv;
    /* Each download parses the allow-list again; checked here so that a typo stops start-up instead of
     * failing every job with a URL input. The message names MW_URL_ALLOW_NETWORKS. */
    if (mw_netpolicy_parse(&policy, cfg->url_allow_networks, err, sizeof(err)) < 0) {
        fprintf(stderr, "mediaworker serve: %s\n", err);
        return MW_EXIT_USAGE;
    }
    return mw_supervisor_run(cfg) < 0 ? MW_EXIT_JOB_FAILED : MW_EXIT_OK;
}

const struct cli_command cli_cmd_serve = {
    .name = "serve",
    .usage = "[flags]",
    .summary = "consume jobs from RabbitMQ, run them in job processes, report to the Data Service",
    .min_positional = 0,
    .max_positional = 0,
    .run = run_serve,
};
