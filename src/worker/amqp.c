/*
 * Connection set-up for every AMQP user of the program. A cluster is given as several comma-separated
 * URLs; each connect attempt starts at the URL after the last one that worked, so after a node dies the
 * next attempt goes to another node instead of hammering the dead one. amqps:// verifies the peer and the
 * host name against MW_AMQP_CACERT or the system CA bundle.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <strings.h>
#include <unistd.h>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <libavutil/attributes.h>
#include <libavutil/error.h>

#include "amqp_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"

#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define CONNECT_TIMEOUT_S 10

static int count_urls(const char *list)
{
    int count = 1;

    for (const char *p = list; *p; p++)
        count += *p == ',';
    return count;
}

/* Copies URL number index of the comma-separated list into out, without surrounding spaces. */
static void pick_url(const char *list, int index, char *out, size_t size)
{
    const char *start = list;
    size_t len;

    for (int i = 0; i < index; i++)
        start = strchr(start, ',') + 1;
    while (*start == ' ')
        start++;
    len = strcspn(start, ",");
    while (len && start[len - 1] == ' ')
        len--;
    snprintf(out, size, "%.*s", (int)len, start);
}

/* See mw_amqp_quiet(). */
static _Thread_local int quiet;
static _Thread_local char last_failure[256];

void mw_amqp_quiet(int on)
{
    quiet = on;
    if (on)
        last_failure[0] = '\0';
}

const char *mw_amqp_last_failure(void)
{
    return last_failure;
}

static void failure(const char *fmt, ...) av_printf_format(1, 2);

static void failure(const char *fmt, ...)
{
    va_list args;

    va_start(args, fmt);
    vsnprintf(last_failure, sizeof(last_failure), fmt, args);
    va_end(args);
    mw_log(quiet ? MW_LOG_DEBUG : MW_LOG_WARN, "broker", "%s", last_failure);
}

int mw_amqp_check(amqp_rpc_reply_t reply, const char *what)
{
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_NONE:
        failure("%s: no reply from the broker", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        failure("%s: %s", what, amqp_error_string2(reply.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *m = reply.reply.decoded;
            failure("%s: connection closed by the broker: %u %.*s", what, m->reply_code, (int)m->reply_text.len,
                    (const char *)m->reply_text.bytes);
        } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *m = reply.reply.decoded;
            failure("%s: channel closed by the broker: %u %.*s", what, m->reply_code, (int)m->reply_text.len,
                    (const char *)m->reply_text.bytes);
        } else {
            failure("%s: unexpected server method 0x%08x", what, reply.reply.id);
        }
        break;
    }
    return MW_ERR_BROKER;
}

int mw_amqp_check_last(amqp_connection_state_t conn, const char *what)
{
    return mw_amqp_check(amqp_get_rpc_reply(conn), what);
}

static amqp_socket_t *new_socket(const struct mw_config *cfg, amqp_connection_state_t conn, int tls)
{
    amqp_socket_t *socket;
    const char *ca = cfg->amqp_cacert[0] ? cfg->amqp_cacert : SYSTEM_CA_BUNDLE;

    if (!tls)
        return amqp_tcp_socket_new(conn);
    socket = amqp_ssl_socket_new(conn);
    if (!socket)
        return NULL;
    amqp_ssl_socket_set_verify_peer(socket, 1);
    amqp_ssl_socket_set_verify_hostname(socket, 1);
    if (amqp_ssl_socket_set_cacert(socket, ca) != AMQP_STATUS_OK) {
        mw_log(MW_LOG_ERROR, "broker", "cannot load CA certificates from %s (MW_AMQP_CACERT)", ca);
        return NULL;
    }
    return socket;
}

static int connect_one(const struct mw_config *cfg, const char *url_text, int heartbeat_s,
                       amqp_connection_state_t *out)
{
    char url[MW_CONFIG_URL_MAX];
    char masked[MW_CONFIG_URL_MAX];
    struct amqp_connection_info info;
    amqp_connection_state_t conn = NULL;
    amqp_socket_t *socket;
    struct timeval timeout = {CONNECT_TIMEOUT_S, 0};
    amqp_table_entry_t capabilities[] = {
        {amqp_cstring_bytes("consumer_cancel_notify"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
        {amqp_cstring_bytes("publisher_confirms"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
        {amqp_cstring_bytes("connection.blocked"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
    };
    amqp_table_entry_t properties[] = {
        {amqp_cstring_bytes("product"), {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("mediaworker")}}},
        {amqp_cstring_bytes("version"), {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(MW_VERSION_STRING)}}},
        {amqp_cstring_bytes("capabilities"),
         {AMQP_FIELD_KIND_TABLE, {.table = {sizeof(capabilities) / sizeof(capabilities[0]), capabilities}}}},
    };
    amqp_table_t property_table = {sizeof(properties) / sizeof(properties[0]), properties};
    int ret = MW_ERR_BROKER;
    int status;

    *out = NULL;
    mw_config_mask_url(url_text, masked, sizeof(masked));
    snprintf(url, sizeof(url), "%s", url_text);
    amqp_default_connection_info(&info);
    if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
        mw_log(MW_LOG_ERROR, "broker", "RABBITMQ_URL: cannot parse %s", masked);
        return MW_ERR_CONFIG;
    }
    /* rabbitmq-c reads a lone trailing "/" as the empty vhost, which no broker has; pika, aio-pika and kombu
     * (the seed's producers) read it as the default vhost "/", and so does the worker. "%2F" still works. */
    if (!info.vhost[0])
        info.vhost = "/";
    conn = amqp_new_connection();
    if (!conn)
        return AVERROR(ENOMEM);
    socket = new_socket(cfg, conn, info.ssl);
    if (!socket)
        goto end;
    amqp_set_handshake_timeout(conn, &timeout);
    amqp_set_rpc_timeout(conn, &timeout);
    status = amqp_socket_open_noblock(socket, info.host, info.port, &timeout);
    if (status != AMQP_STATUS_OK) {
        failure("cannot connect to %s: %s", masked, amqp_error_string2(status));
        goto end;
    }
    if (mw_amqp_check(amqp_login_with_properties(conn, info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, heartbeat_s,
                                                 &property_table, AMQP_SASL_METHOD_PLAIN, info.user,
                                                 info.password), "login") < 0)
        goto end;
    amqp_channel_open(conn, MW_AMQP_CHANNEL);
    if (mw_amqp_check_last(conn, "channel.open") < 0)
        goto end;
    mw_log(MW_LOG_INFO, "broker", "connected to %s", masked);
    *out = conn;
    conn = NULL;
    ret = 0;
end:
    if (conn)
        amqp_destroy_connection(conn);
    return ret;
}

int mw_amqp_connect(const struct mw_config *cfg, int heartbeat_s, int *next_url, amqp_connection_state_t *conn)
{
    int count = count_urls(cfg->rabbitmq_url);
    int ret = MW_ERR_BROKER;

    for (int tried = 0; tried < count; tried++) {
        char url[MW_CONFIG_URL_MAX];
        int index = (*next_url + tried) % count;

        pick_url(cfg->rabbitmq_url, index, url, sizeof(url));
        ret = connect_one(cfg, url, heartbeat_s, conn);
        if (ret == 0) {
            *next_url = (index + 1) % count;
            return 0;
        }
        if (ret == MW_ERR_CONFIG || ret == AVERROR(ENOMEM))
            return ret;
    }
    return ret;
}

void mw_amqp_close(amqp_connection_state_t *pconn)
{
    amqp_connection_state_t conn = pconn ? *pconn : NULL;

    if (!conn)
        return;
    /* A broken connection answers nothing; the short RPC timeout keeps a dead peer from stalling exit. */
    amqp_set_rpc_timeout(conn, &(struct timeval){2, 0});
    amqp_channel_close(conn, MW_AMQP_CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    *pconn = NULL;
}

static const amqp_field_value_t *find_header(const amqp_table_t *headers, const char *name)
{
    size_t len = strlen(name);

    for (int i = 0; headers && i < headers->num_entries; i++) {
        const amqp_table_entry_t *e = &headers->entries[i];
        if (e->key.len == len && !strncasecmp(e->key.bytes, name, len))
            return &e->value;
    }
    return NULL;
}

int mw_amqp_header_text(const amqp_table_t *headers, const char *name, enum mw_text_class cls, char *out,
                        size_t size, const char **reason)
{
    const amqp_field_value_t *v = find_header(headers, name);

    out[0] = '\0';
    if (!v)
        return 0;
    if (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES) {
        *reason = "is not a string";
        return MW_ERR_INVALID_MESSAGE;
    }
    /* Checked before anything is copied: out only ever holds a value that passed. */
    if (mw_text_check(v->value.bytes.bytes, v->value.bytes.len, size - 1, cls, reason) < 0)
        return MW_ERR_INVALID_MESSAGE;
    memcpy(out, v->value.bytes.bytes, v->value.bytes.len);
    out[v->value.bytes.len] = '\0';
    return 1;
}

int mw_amqp_header_int(const amqp_table_t *headers, const char *name, int64_t *value)
{
    const amqp_field_value_t *v = find_header(headers, name);

    if (!v)
        return 0;
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:  *value = v->value.i8;  return 1;
    case AMQP_FIELD_KIND_U8:  *value = v->value.u8;  return 1;
    case AMQP_FIELD_KIND_I16: *value = v->value.i16; return 1;
    case AMQP_FIELD_KIND_U16: *value = v->value.u16; return 1;
    case AMQP_FIELD_KIND_I32: *value = v->value.i32; return 1;
    case AMQP_FIELD_KIND_U32: *value = v->value.u32; return 1;
    case AMQP_FIELD_KIND_I64: *value = v->value.i64; return 1;
    case AMQP_FIELD_KIND_U64: *value = (int64_t)v->value.u64; return 1;
    default: return 0;
    }
}
