/*
 * The strict reader is a validating scan of the raw bytes (a recursive descent over the JSON grammar of
 * RFC 8259) that keeps the path of the value it is in, so every refusal names its field; only a document
 * that passes is handed to cJSON. Duplicate keys are found afterwards on cJSON's tree, where keys are
 * already decoded ("a" and "\u0061" are the same key).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/json.h"
#include "mediaworker/log.h"
#include "mediaworker/text.h"

struct scan {
    const unsigned char *p, *end;
    int depth;
    int allow_control;
    int content_error;      /* a string's content was refused; the structure is still being checked */
    char path[256];
    char *err;
    size_t err_size;
};

static int fail(struct scan *s, const char *fmt, ...) MW_PRINTF(2, 3);

static int fail(struct scan *s, const char *fmt, ...)
{
    char why[160];
    va_list args;

    va_start(args, fmt);
    vsnprintf(why, sizeof(why), fmt, args);
    va_end(args);
    snprintf(s->err, s->err_size, "%s: %s", s->path[0] ? s->path : "message body", why);
    return MW_ERR_INVALID_MESSAGE;
}

/* A string that is well-formed JSON but holds what no field may hold: the first one is the reason, and the
 * scan goes on, so that a document whose structure is sound can still say which user sent it. */
static int refuse_content(struct scan *s, const char *why)
{
    if (!s->content_error)
        fail(s, "%s", why);
    s->content_error = 1;
    return 0;
}

static void skip_space(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p, uint32_t *value)
{
    *value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = p[i] >= '0' && p[i] <= '9' ? p[i] - '0'
                  : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
                  : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10 : -1;
        if (digit < 0)
            return -1;
        *value = *value << 4 | (uint32_t)digit;
    }
    return 0;
}

/* A \u escape at s->p (after the backslash and 'u'), a surrogate pair taking both halves. */
static int scan_unicode_escape(struct scan *s)
{
    uint32_t unit, low;

    if (s->end - s->p < 4 || hex4(s->p, &unit) < 0)
        return fail(s, "bad \\u escape");
    s->p += 4;
    if (unit >= 0xdc00 && unit <= 0xdfff)
        return fail(s, "lone UTF-16 surrogate in a \\u escape");
    if (unit >= 0xd800 && unit <= 0xdbff) {
        if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || hex4(s->p + 2, &low) < 0 || low < 0xdc00 ||
            low > 0xdfff)
            return fail(s, "lone UTF-16 surrogate in a \\u escape");
        s->p += 6;
        return 0;
    }
    if (unit == 0 || (mw_text_is_control(unit) && !s->allow_control))
        return refuse_content(s, unit == 0 ? "contains a NUL byte" : "contains a control character");
    return 0;
}

/* A string at s->p (on the opening quote). When key is not NULL, its raw text (for the path) goes there. */
static int scan_string(struct scan *s, char *key, size_t key_size)
{
    const unsigned char *start = ++s->p;

    while (s->p < s->end && *s->p != '"') {
        uint32_t code_point;
        size_t n;

        if (*s->p == '\\') {
            if (s->end - s->p < 2)
                return fail(s, "unterminated string");
            s->p += 2;
            switch (s->p[-1]) {
            case '"': case '\\': case '/':
                continue;
            case 'u':
                if (scan_unicode_escape(s) < 0)
                    return MW_ERR_INVALID_MESSAGE;
                continue;
            case 'b': case 'f': case 'n': case 'r': case 't':
                if (!s->allow_control)
                    refuse_content(s, "contains a control character");
                continue;
            default:
                return fail(s, "bad escape in a string");
            }
        }
        n = mw_text_utf8_sequence(s->p, (size_t)(s->end - s->p), &code_point);
        if (!n) {
            refuse_content(s, "is not valid UTF-8");
            s->p++;
            continue;
        }
        /* Raw C0 controls are invalid JSON whatever the mode. */
        if (code_point < 0x20 || (mw_text_is_control(code_point) && !s->allow_control))
            refuse_content(s, code_point == 0 ? "contains a NUL byte" : "contains a control character");
        s->p += n;
    }
    if (s->p >= s->end)
        return fail(s, "unterminated string");
    if (key)
        snprintf(key, key_size, "%.*s", (int)(s->p - start), (const char *)start);
    s->p++;
    return 0;
}

static int scan_digits(struct scan *s)
{
    const unsigned char *start = s->p;

    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start ? 0 : -1;
}

static int scan_number(struct scan *s)
{
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (scan_digits(s) < 0)
        return fail(s, "bad number");
    if (s->p < s->end && *s->p == '.' && (s->p++, scan_digits(s) < 0))
        return fail(s, "bad number");
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (scan_digits(s) < 0)
            return fail(s, "bad number");
    }
    return 0;
}

static int scan_literal(struct scan *s, const char *word)
{
    size_t len = strlen(word);

    if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len))
        return fail(s, "not valid JSON");
    s->p += len;
    return 0;
}

static int scan_value(struct scan *s);

/* Scans the members of an object or the elements of an array, extending the path for each. */
static int scan_container(struct scan *s, int object)
{
    size_t path_len = strlen(s->path);
    char close = object ? '}' : ']';
    int ret = 0;

    if (++s->depth > MW_JSON_MAX_DEPTH)
        return fail(s, "nested deeper than %d levels", MW_JSON_MAX_DEPTH);
    s->p++;
    skip_space(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return 0;
    }
    for (int index = 0; ret == 0; index++) {
        skip_space(s);
        if (object) {
            char key[64];
            if (s->p >= s->end || *s->p != '"')
                return fail(s, "not valid JSON (expected a key)");
            if ((ret = scan_string(s, key, sizeof(key))) < 0)
                return ret;
            snprintf(s->path + path_len, sizeof(s->path) - path_len, "%s%s", path_len ? "." : "", key);
            skip_space(s);
            if (s->p >= s->end || *s->p++ != ':')
                return fail(s, "not valid JSON (expected ':')");
        } else {
            snprintf(s->path + path_len, sizeof(s->path) - path_len, "[%d]", index);
        }
        if ((ret = scan_value(s)) < 0)
            return ret;
        s->path[path_len] = '\0';
        skip_space(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            break;
        }
        return fail(s, "not valid JSON (expected ',' or '%c')", close);
    }
    s->depth--;
    return 0;
}

static int scan_value(struct scan *s)
{
    skip_space(s);
    if (s->p >= s->end)
        return fail(s, "not valid JSON (ends early)");
    switch (*s->p) {
    case '{': return scan_container(s, 1);
    case '[': return scan_container(s, 0);
    case '"': return scan_string(s, NULL, 0);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s);
        return fail(s, *s->p ? "not valid JSON" : "contains a NUL byte");
    }
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorting the keys finds a duplicate in n log n, so a message with many keys costs no quadratic time. */
static int find_duplicate_key(const cJSON *item, char *err, size_t err_size)
{
    const cJSON *child;
    const char **keys = NULL;
    int count = 0, ret = 0;

    if (cJSON_IsObject(item)) {
        for (child = item->child; child; child = child->next)
            count++;
        if (count > 1 && !(keys = av_malloc_array((size_t)count, sizeof(*keys))))
            return AVERROR(ENOMEM);
        count = 0;
        for (child = item->child; keys && child; child = child->next)
            keys[count++] = child->string;
        if (keys)
            qsort(keys, (size_t)count, sizeof(*keys), compare_keys);
        for (int i = 1; i < count && ret == 0; i++)
            if (!strcmp(keys[i - 1], keys[i])) {
                snprintf(err, err_size, "%.64s: the key appears twice in one object", keys[i]);
                ret = MW_ERR_INVALID_MESSAGE;
            }
        av_free(keys);
    }
    for (child = item->child; child && ret == 0; child = child->next)
        ret = find_duplicate_key(child, err, err_size);
    return ret;
}

int mw_json_parse_strict(const char *text, size_t length, int flags, cJSON **out, char *err, size_t err_size)
{
    struct scan s = {.p = (const unsigned char *)text, .end = (const unsigned char *)text + length,
                     .allow_control = !!(flags & MW_JSON_ALLOW_CONTROL), .err = err, .err_size = err_size};
    cJSON *root;
    int ret;

    *out = NULL;
    if ((ret = scan_value(&s)) < 0)
        return ret;
    skip_space(&s);
    if (s.p != s.end)
        return fail(&s, *s.p ? "bytes after the JSON document" : "contains a NUL byte");
    root = cJSON_ParseWithLengthOpts(text, length, NULL, 0);
    if (!root)
        return s.content_error ? MW_ERR_INVALID_MESSAGE : AVERROR(ENOMEM);
    if ((ret = find_duplicate_key(root, err, err_size)) < 0) {
        cJSON_Delete(root);
        return ret;
    }
    if (s.content_error && !(flags & MW_JSON_KEEP_ON_CONTENT_ERROR)) {
        cJSON_Delete(root);
        return MW_ERR_INVALID_MESSAGE;
    }
    *out = root;
    return s.content_error ? MW_ERR_INVALID_MESSAGE : 0;
}

/* A copy of text with every byte that starts no valid UTF-8 sequence replaced by U+FFFD. */
static char *valid_utf8_copy(const char *text)
{
    static const char replacement[] = "\xef\xbf\xbd";
    size_t left = strlen(text);
    const unsigned char *p = (const unsigned char *)text;
    char *copy = cJSON_malloc(left * 3 + 1);
    size_t used = 0;

    if (!copy)
        return NULL;
    while (left) {
        uint32_t code_point;
        size_t n = mw_text_utf8_sequence(p, left, &code_point);

        if (n) {
            memcpy(copy + used, p, n);
            used += n;
        } else {
            n = 1;
            memcpy(copy + used, replacement, 3);
            used += 3;
        }
        p += n;
        left -= n;
    }
    copy[used] = '\0';
    return copy;
}

static int is_valid_utf8(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t left = strlen(text);

    while (left) {
        uint32_t code_point;
        size_t n = mw_text_utf8_sequence(p, left, &code_point);
        if (!n)
            return 0;
        p += n;
        left -= n;
    }
    return 1;
}

/* Replaces *field (cJSON's allocation) with its valid UTF-8 copy. */
static int rewrite(char **field)
{
    char *copy;

    if (!*field || is_valid_utf8(*field))
        return 0;
    if (!(copy = valid_utf8_copy(*field)))
        return AVERROR(ENOMEM);
    cJSON_free(*field);
    *field = copy;
    return 0;
}

int mw_json_make_valid_utf8(cJSON *item)
{
    int ret = 0;

    if (!item)
        return 0;
    if (!(item->type & cJSON_StringIsConst))
        ret = rewrite(&item->string);
    if (ret == 0 && cJSON_IsString(item))
        ret = rewrite(&item->valuestring);
    for (cJSON *child = item->child; child && ret == 0; child = child->next)
        ret = mw_json_make_valid_utf8(child);
    return ret;
}
