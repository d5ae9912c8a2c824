/*
 * Shared by the command files: the command table entry, option parsing that accepts every configuration
 * flag on every command, and the exit codes.
 */
#ifndef MEDIAWORKER_CLI_INTERNAL_H
#define MEDIAWORKER_CLI_INTERNAL_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"

enum {
    MW_EXIT_OK = 0,
    MW_EXIT_JOB_FAILED = 1,      /* the job or the input failed */
    MW_EXIT_USAGE = 2,           /* bad command line or configuration */
};

struct cli_option {
    const char *name;            /* "--output" */
    const char *short_name;      /* "-o" or NULL */
    const char *value_name;      /* "FILE" when it takes a value, NULL for a switch */
    const char **value;          /* receives the value */
    int *enabled;                /* receives 1 for a switch */
    const char *help;
};

struct cli_command {
    const char *name;
    const char *usage;           /* after "mediaworker NAME " */
    const char *summary;
    const struct cli_option *options;   /* terminated by an entry with name NULL; may be NULL */
    int min_positional, max_positional; /* max -1 = unlimited */
    int hidden;                  /* internal command: not listed in the usage */
    int one_job;                 /* runs one job in this process, which then has every core */
    /* Runs with the validated configuration; returns an exit code. */
    int (*run)(const struct mw_config *cfg, int argc, char **argv);
};

/*
 * Parses argv (after the command name): command options, configuration flags (--name value or
 * --name=value) and positional arguments, which are left in argv[0..*positional_count). Returns -1 when
 * parsing succeeded and the command should run, else the exit code to exit with (0 after --help).
 */
int cli_parse(const struct cli_command *cmd, struct mw_config *cfg, int argc, char **argv, int *positional_count);

void cli_print_command_help(const struct cli_command *cmd, FILE *out);

/* Parses a whole decimal integer within [min, max] into *out. 0, or AVERROR(EINVAL) leaving *out alone. */
int cli_parse_int(const char *text, int min, int max, int *out);

/*
 * What a command prints on stdout when its input fails: {"error": {"code", "message"}, "file"}, the code
 * as in job reports (CODEC_REFUSED, ...), detail (may be NULL or "") appended to the message. NULL when
 * out of memory.
 */
cJSON *cli_failure_json(const char *file, int err, const char *detail);

/* Prints cli_failure_json on stdout (pretty), so that every command says why in the same form. */
void cli_print_failure(const char *file, int err, const char *detail);

/* Reads a whole file into a NUL-terminated buffer (free with av_free). 0 or AVERROR(errno). */
int cli_read_file(const char *path, char **data, size_t *size);

/* Picks the command, loads and validates the configuration, sets up logging, runs it. */
int cli_main(int argc, char **argv);

extern const struct cli_command cli_cmd_probe;
extern const struct cli_command cli_cmd_thumbnail;
extern const struct cli_command cli_cmd_storyboard;
extern const struct cli_command cli_cmd_transcode;
extern const struct cli_command cli_cmd_run;
extern const struct cli_command cli_cmd_config;
extern const struct cli_command cli_cmd_version;
extern const struct cli_command cli_cmd_caps;
extern const struct cli_command cli_cmd_decode;
extern const struct cli_command cli_cmd_serve;
extern const struct cli_command cli_cmd_submit;
extern const struct cli_command cli_cmd_job_process;

#endif
