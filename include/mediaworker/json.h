/*
 * JSON at the trust boundary. cJSON is lenient where a message from outside must not be: it takes trailing
 * bytes after the document, keeps the last of two equal keys (so a reviewer and the worker can read
 * different values from one message), decodes "\u0000" into a string it then cuts short, and passes invalid
 * UTF-8 through to whatever prints it. mw_json_parse_strict() refuses all of these before cJSON sees the
 * document, naming the field, and mw_json_make_valid_utf8() keeps what we print (reports, events) valid
 * UTF-8 even when a value came from a file's metadata.
 */
#ifndef MEDIAWORKER_JSON_H
#define MEDIAWORKER_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Objects and arrays nest at most this deep in a message. */
#define MW_JSON_MAX_DEPTH 32

/* Escaped control characters (other than \u0000) are accepted: for documents of our own making, such as
 * a job process's report, where a file's metadata may hold a line break. */
#define MW_JSON_ALLOW_CONTROL 1
/* When only the content of strings was refused (the structure is sound, no key repeats), *out still gets
 * the tree alongside the error, for reading what is unambiguous, such as whom to tell of the refusal. */
#define MW_JSON_KEEP_ON_CONTENT_ERROR 2

/*
 * Parses length bytes as exactly one JSON value. Refused: NUL bytes, invalid UTF-8, control characters in
 * strings (raw or escaped, unless flags has MW_JSON_ALLOW_CONTROL; no field of a message holds one), lone
 * surrogates, nesting deeper than
 * MW_JSON_MAX_DEPTH, duplicate keys in an object, anything but whitespace after the value. Returns 0 and
 * *out (free with cJSON_Delete), or MW_ERR_INVALID_MESSAGE with a reason naming the field ("file_info.name:
 * contains a control character") in err and *out NULL (but see MW_JSON_KEEP_ON_CONTENT_ERROR; free *out
 * whenever it is set), or AVERROR(ENOMEM).
 */
int mw_json_parse_strict(const char *text, size_t length, int flags, cJSON **out, char *err, size_t err_size);

/*
 * Rewrites every string value and key of item and below that is not valid UTF-8, replacing each byte that
 * starts no valid sequence by U+FFFD, so that cJSON prints a valid UTF-8 document (cJSON escapes control
 * characters itself). Returns 0 or AVERROR(ENOMEM) (the tree is then partly rewritten, still valid to free).
 */
int mw_json_make_valid_utf8(cJSON *item);

#endif
