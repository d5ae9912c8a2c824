/*
 * Text that crossed a trust boundary: the checks every string from outside passes once, where it enters
 * (AMQP properties and headers in the broker thread, JSON strings in the strict JSON reader), and the
 * escaping that everything printed into a log line or a report goes through.
 *
 * Two classes. An id (message id, request id, job id) travels into HTTP headers, log lines, paths and
 * idempotency keys, so it is printable ASCII without spaces. Free text (a file name, a content type) is any
 * valid UTF-8 without control characters (C0, DEL, C1).
 */
#ifndef MEDIAWORKER_TEXT_H
#define MEDIAWORKER_TEXT_H

#include <stddef.h>
#include <stdint.h>

enum mw_text_class {
    MW_TEXT_ID,        /* 0x21..0x7e only */
    MW_TEXT_FREE,      /* valid UTF-8, no control characters */
};

/*
 * Checks len bytes of text (which may hold NUL bytes: they are refused) against the class and a maximum
 * length in bytes. Returns 0, or MW_ERR_INVALID_MESSAGE with *reason (a static string such as "contains a
 * control character") when reason is not NULL.
 */
int mw_text_check(const char *text, size_t len, size_t max_len, enum mw_text_class cls, const char **reason);

/*
 * Length of the valid UTF-8 sequence at p (at most left bytes) and its code point in *code_point, or 0 for
 * a byte that starts no valid sequence (overlong forms, surrogates and values above U+10FFFF included).
 */
size_t mw_text_utf8_sequence(const unsigned char *p, size_t left, uint32_t *code_point);

/* True for the code points no field of ours may hold: C0 controls, DEL and C1 controls. */
int mw_text_is_control(uint32_t code_point);

enum mw_text_escape_mode {
    MW_ESCAPE_CONTROLS,      /* for a text line: control characters too, so nothing can end the line */
    MW_ESCAPE_INVALID_ONLY,  /* for a JSON string, whose own escaping takes care of control characters */
};

/*
 * Copies the NUL-terminated text into out (size > 0, always terminated), writing each byte that is not
 * valid UTF-8 (and with MW_ESCAPE_CONTROLS each control character) as "\xNN", so a printed value can
 * neither break a line nor a JSON document. Returns the length written; a value that does not fit is cut
 * at a character boundary.
 */
size_t mw_text_escape(const char *text, char *out, size_t size, enum mw_text_escape_mode mode);

#endif
