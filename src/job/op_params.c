#include <math.h>
#include <stdio.h>

#include "mediaworker/error.h"
#include "op_params_internal.h"

int mw_param_invalid(const char *op, const char *name, const char *reason, char *err, size_t err_size)
{
    snprintf(err, err_size, "%s.%s: %s", op, name, reason);
    return MW_ERR_INVALID_MESSAGE;
}

static const cJSON *field(const cJSON *params, const char *name)
{
    const cJSON *item = cJSON_IsObject(params) ? cJSON_GetObjectItemCaseSensitive(params, name) : NULL;

    return item && !cJSON_IsNull(item) ? item : NULL;
}

int mw_param_int(const cJSON *params, const char *op, const char *name, int min, int max, int *out, char *err,
                 size_t err_size)
{
    const cJSON *item = field(params, name);

    if (!item)
        return 0;
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) || item->valuedouble < min ||
        item->valuedouble > max) {
        char reason[96];
        snprintf(reason, sizeof(reason), "must be an integer from %d to %d", min, max);
        return mw_param_invalid(op, name, reason, err, err_size);
    }
    *out = (int)item->valuedouble;
    return 0;
}

int mw_param_number(const cJSON *params, const char *op, const char *name, double min, double max, double *out,
                    char *err, size_t err_size)
{
    const cJSON *item = field(params, name);

    if (!item)
        return 0;
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < min || item->valuedouble > max) {
        char reason[96];
        snprintf(reason, sizeof(reason), "must be a number from %g to %g", min, max);
        return mw_param_invalid(op, name, reason, err, err_size);
    }
    *out = item->valuedouble;
    return 0;
}

int mw_param_bool(const cJSON *params, const char *op, const char *name, int *out, char *err, size_t err_size)
{
    const cJSON *item = field(params, name);

    if (!item)
        return 0;
    if (!cJSON_IsBool(item))
        return mw_param_invalid(op, name, "must be true or false", err, err_size);
    *out = cJSON_IsTrue(item);
    return 0;
}

int mw_param_string(const cJSON *params, const char *op, const char *name, const char **out, char *err,
                    size_t err_size)
{
    const cJSON *item = field(params, name);

    if (!item)
        return 0;
    if (!cJSON_IsString(item))
        return mw_param_invalid(op, name, "must be a string", err, err_size);
    *out = item->valuestring;
    return 0;
}
