/*
 * /metrics, /healthz and /readyz over libmicrohttpd.
 *
 * The address is resolved once at start and bound explicitly (MHD_OPTION_SOCK_ADDR): libmicrohttpd would
 * otherwise listen on every interface, and metrics say more about a deployment than it should tell the
 * world. Only GET and HEAD are answered; requests have no body we would read. Readiness is computed from
 * the metrics set (broker consuming, job processes alive, draining), so the http thread needs no access to
 * the objects that own that state.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libavutil/avstring.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <microhttpd.h>

#include "mediaworker/error.h"
#include "mediaworker/httpd.h"
#include "mediaworker/log.h"

/* A scrape is tiny; a client that sends nothing for this long is not a Prometheus server. */
#define CONNECTION_TIMEOUT_S 10
#define CONNECTION_LIMIT 32

struct mw_httpd {
    const struct mw_config *cfg;
    const struct mw_metrics *metrics;
    struct MHD_Daemon *daemon;
};

/* Splits "host:port" / "[v6]:port" into host and port; 0 or MW_ERR_CONFIG. */
static int split_address(const char *address, char *host, size_t host_size, char *port, size_t port_size)
{
    const char *colon;
    const char *host_start = address;
    size_t host_len;

    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (!close || close[1] != ':')
            return MW_ERR_CONFIG;
        host_start = address + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon)
            return MW_ERR_CONFIG;
        host_len = (size_t)(colon - address);
    }
    if (!host_len || host_len >= host_size || !colon[1] || strlen(colon + 1) >= port_size)
        return MW_ERR_CONFIG;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    snprintf(port, port_size, "%s", colon + 1);
    return 0;
}

static enum MHD_Result respond(struct MHD_Connection *connection, unsigned int status, const char *type,
                               char *body, size_t size)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer_with_free_callback(size, body, av_free);
    enum MHD_Result ret;

    if (!response) {
        av_free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    ret = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *connection, unsigned int status, const char *text)
{
    char *body = av_asprintf("%s\n", text);

    if (!body)
        return MHD_NO;
    return respond(connection, status, "text/plain; charset=utf-8", body, strlen(body));
}

static enum MHD_Result handle(void *opaque, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request_state)
{
    struct mw_httpd *h = opaque;
    char reason[128];
    char *text = NULL;
    size_t size = 0;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)request_state;
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return respond_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    if (!strcmp(url, "/healthz"))
        return respond_text(connection, MHD_HTTP_OK, "ok");
    if (!strcmp(url, "/readyz")) {
        int ready = mw_metrics_ready(h->metrics, h->cfg->isolation == MW_ISOLATION_PROCESS, reason, sizeof(reason));
        return respond_text(connection, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, reason);
    }
    if (!strcmp(url, "/metrics")) {
        if (mw_metrics_render(h->metrics, &text, &size) < 0)
            return respond_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return respond(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, size);
    }
    return respond_text(connection, MHD_HTTP_NOT_FOUND, "not found");
}

static int resolve(const char *address, struct addrinfo **info)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char host[256];
    char port[16];
    int ret = split_address(address, host, sizeof(host), port, sizeof(port));

    if (ret < 0)
        return ret;
    ret = getaddrinfo(host, port, &hints, info);
    if (ret) {
        mw_log(MW_LOG_ERROR, "httpd", "MW_HTTP_LISTEN %s cannot be resolved: %s", address, gai_strerror(ret));
        return MW_ERR_CONFIG;
    }
    return 0;
}

int mw_httpd_new(struct mw_httpd **ph, const struct mw_config *cfg, const struct mw_metrics *metrics)
{
    struct mw_httpd *h = NULL;
    struct addrinfo *info = NULL;
    int ret;

    *ph = NULL;
    if (!cfg->http_listen[0])
        return 0;
    if ((ret = resolve(cfg->http_listen, &info)) < 0) {
        if (ret == MW_ERR_CONFIG)
            mw_log(MW_LOG_ERROR, "httpd", "MW_HTTP_LISTEN %s is not host:port", cfg->http_listen);
        goto end;
    }
    if (!(h = av_mallocz(sizeof(*h)))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    h->cfg = cfg;
    h->metrics = metrics;
    errno = 0;
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                                     (info->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                                 0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, info->ai_addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONNECTION_LIMIT, MHD_OPTION_END);
    if (!h->daemon) {
        ret = errno ? AVERROR(errno) : AVERROR(EADDRINUSE);
        mw_log(MW_LOG_ERROR, "httpd", "cannot listen on %s: %s", cfg->http_listen, mw_err2str(ret));
        goto end;
    }
    mw_log(MW_LOG_INFO, "httpd", "serving /metrics, /healthz, /readyz on %s", cfg->http_listen);
    *ph = h;
    h = NULL;
    ret = 0;
end:
    if (info)
        freeaddrinfo(info);
    av_free(h);
    return ret;
}

void mw_httpd_free(struct mw_httpd **ph)
{
    struct mw_httpd *h = ph ? *ph : NULL;

    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    av_free(h);
    *ph = NULL;
}
