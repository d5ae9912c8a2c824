#include <stdio.h>
#include <string.h>

#include "mediaworker/error.h"
#include "mediaworker/text.h"

size_t mw_text_utf8_sequence(const unsigned char *p, size_t left, uint32_t *code_point)
{
    size_t len;
    uint32_t value;

    if (!left)
        return 0;
    if (p[0] < 0x80) {
        *code_point = p[0];
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        value = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        value = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        value = p[0] & 0x07;
    } else {
        return 0;
    }
    if (left < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        value = value << 6 | (p[i] & 0x3f);
    }
    /* Overlong encodings, UTF-16 surrogates and code points past Unicode are not UTF-8. */
    if ((len == 3 && value < 0x800) || (len == 4 && value < 0x10000) || value > 0x10ffff ||
        (value >= 0xd800 && value <= 0xdfff))
        return 0;
    *code_point = value;
    return len;
}

int mw_text_is_control(uint32_t code_point)
{
    return code_point < 0x20 || (code_point >= 0x7f && code_point <= 0x9f);
}

static int refuse(const char **reason, const char *why)
{
    if (reason)
        *reason = why;
    return MW_ERR_INVALID_MESSAGE;
}

int mw_text_check(const char *text, size_t len, size_t max_len, enum mw_text_class cls, const char **reason)
{
    const unsigned char *p = (const unsigned char *)text;

    if (len > max_len)
        return refuse(reason, "is too long");
    for (size_t i = 0; i < len;) {
        uint32_t code_point;
        size_t n;

        if (cls == MW_TEXT_ID) {
            if (p[i] < 0x21 || p[i] > 0x7e)
                return refuse(reason, p[i] == 0 ? "contains a NUL byte"
                                      : p[i] < 0x20 || p[i] == 0x7f ? "contains a control character"
                                      : p[i] == ' ' ? "contains a space" : "is not printable ASCII");
            i++;
            continue;
        }
        n = mw_text_utf8_sequence(p + i, len - i, &code_point);
        if (!n)
            return refuse(reason, "is not valid UTF-8");
        if (mw_text_is_control(code_point))
            return refuse(reason, code_point == 0 ? "contains a NUL byte" : "contains a control character");
        i += n;
    }
    return 0;
}

size_t mw_text_escape(const char *text, char *out, size_t size, enum mw_text_escape_mode mode)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t left = strlen(text);
    size_t used = 0;

    while (left) {
        uint32_t code_point;
        size_t n = mw_text_utf8_sequence(p, left, &code_point);

        if (n && (mode == MW_ESCAPE_INVALID_ONLY || !mw_text_is_control(code_point))) {
            if (used + n >= size)
                break;
            memcpy(out + used, p, n);
            used += n;
        } else {
            /* One byte at a time: a control character (1 or 2 bytes in UTF-8) or an invalid byte. */
            n = n ? n : 1;
            if (used + 4 * n >= size)
                break;
            for (size_t i = 0; i < n; i++)
                used += (size_t)snprintf(out + used, size - used, "\\x%02x", p[i]);
        }
        p += n;
        left -= n;
    }
    out[used] = '\0';
    return used;
}
