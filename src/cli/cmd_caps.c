#include <stdio.h>

#include "cli_internal.h"
#include "mediaworker/hwaccel.h"

/* Opens each device and codec for real: a listed-but-broken driver shows up here as unavailable. */
static int run_caps(const struct mw_config *cfg, int argc, char **argv)
{
    cJSON *caps = mw_hwaccel_capabilities();
    char *text = caps ? cJSON_Print(caps) : NULL;

    (void)cfg;
    (void)argc;
    (void)argv;
    if (text)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(caps);
    return text ? MW_EXIT_OK : MW_EXIT_JOB_FAILED;
}

const struct cli_command cli_cmd_caps = {
    .name = "caps",
    .usage = "",
    .summary = "list the hardware devices and codecs usable on this machine (each one is opened to check)",
    .min_positional = 0,
    .max_positional = 0,
    .run = run_caps,
};
