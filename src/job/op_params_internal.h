/*
 * Reading an operation's parameters with one error style: MW_ERR_INVALID_MESSAGE and a reason that names
 * the operation and the field ("thumbnail.width: must be an integer from 1 to 8192"). A missing or null
 * field leaves the output at the default the caller put there.
 */
#ifndef MEDIAWORKER_JOB_OP_PARAMS_INTERNAL_H
#define MEDIAWORKER_JOB_OP_PARAMS_INTERNAL_H

#include <stddef.h>

#include <cjson/cJSON.h>

int mw_param_int(const cJSON *params, const char *op, const char *name, int min, int max, int *out, char *err,
                 size_t err_size);
int mw_param_number(const cJSON *params, const char *op, const char *name, double min, double max, double *out,
                    char *err, size_t err_size);
int mw_param_bool(const cJSON *params, const char *op, const char *name, int *out, char *err, size_t err_size);
/* *out points into params (or stays as given). */
int mw_param_string(const cJSON *params, const char *op, const char *name, const char **out, char *err,
                    size_t err_size);
/* Fails naming the field with reason. */
int mw_param_invalid(const char *op, const char *name, const char *reason, char *err, size_t err_size);

#endif
