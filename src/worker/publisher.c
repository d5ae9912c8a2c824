/*
 * Publishing with confirms, one message at a time: submit is for people and tests, so each message is
 * known to be stored (or the command fails) before the next one goes.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/time.h>

#include <amqp.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "amqp_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/publisher.h"
#include "mediaworker/topology.h"
#include "topology_internal.h"

#define CONFIRM_TIMEOUT_S 30

struct mw_publisher {
    const struct mw_config *cfg;
    amqp_connection_state_t conn;
    uint64_t next_seq;
};

int mw_publisher_new(struct mw_publisher **pp, const struct mw_config *cfg)
{
    struct mw_publisher *p = av_mallocz(sizeof(*p));
    int delays[MW_TOPOLOGY_MAX_TIERS];
    char err[256];
    int next_url = 0;
    int tiers;
    int ret;

    *pp = NULL;
    if (!p)
        return AVERROR(ENOMEM);
    p->cfg = cfg;
    tiers = mw_topology_parse_delays(cfg->retry_delays, delays, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err));
    if (tiers < 0) {
        mw_log(MW_LOG_ERROR, "submit", "%s", err);
        ret = tiers;
        goto fail;
    }
    if ((ret = mw_amqp_connect(cfg, 0, &next_url, &p->conn)) < 0 ||
        (ret = mw_topology_declare(p->conn, cfg, delays, tiers, &(struct mw_topology_state){0})) < 0)
        goto fail;
    amqp_confirm_select(p->conn, MW_AMQP_CHANNEL);
    if ((ret = mw_amqp_check_last(p->conn, "confirm.select")) < 0)
        goto fail;
    p->next_seq = 1;
    *pp = p;
    return 0;
fail:
    mw_publisher_free(&p);
    return ret;
}

void mw_publisher_free(struct mw_publisher **pp)
{
    struct mw_publisher *p = pp ? *pp : NULL;

    if (!p)
        return;
    mw_amqp_close(&p->conn);
    av_free(p);
    *pp = NULL;
}

/* One message is in flight at a time, so a basic.return seen before its ack is that message's. */
static int wait_confirm(struct mw_publisher *p, uint64_t seq)
{
    int returned = 0;

    for (;;) {
        amqp_frame_t frame;
        int status = amqp_simple_wait_frame_noblock(p->conn, &frame, &(struct timeval){CONFIRM_TIMEOUT_S, 0});

        if (status != AMQP_STATUS_OK) {
            mw_log(MW_LOG_ERROR, "submit", "no confirm from the broker: %s", amqp_error_string2(status));
            return MW_ERR_BROKER;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            const amqp_basic_ack_t *ack = frame.payload.method.decoded;
            if (ack->delivery_tag != seq && !(ack->multiple && ack->delivery_tag >= seq))
                break;
            /* Published as mandatory: the broker acks a message no queue took, after returning it. */
            if (returned) {
                mw_log(MW_LOG_ERROR, "submit", "the message is unroutable: no queue is bound to exchange \"%s\" "
                       "with routing key \"%s\"", p->cfg->exchange, p->cfg->queue);
                return MW_ERR_BROKER;
            }
            return 0;
        }
        case AMQP_BASIC_RETURN_METHOD:
            returned = 1;
            break;
        case AMQP_BASIC_NACK_METHOD:
            mw_log(MW_LOG_ERROR, "submit", "the broker refused the message");
            return MW_ERR_BROKER;
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
            return mw_amqp_check((amqp_rpc_reply_t){AMQP_RESPONSE_SERVER_EXCEPTION, frame.payload.method, 0},
                                 "publish");
        default:
            break;
        }
    }
}

int mw_publisher_send(struct mw_publisher *p, const char *body, size_t size, const char *message_id,
                      const char *request_id)
{
    amqp_table_entry_t header = {amqp_cstring_bytes("X-Request-ID"),
                                 {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(request_id)}}};
    amqp_basic_properties_t props = {0};
    int status;

    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                   AMQP_BASIC_HEADERS_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    props.message_id = amqp_cstring_bytes(message_id);
    props.headers = (amqp_table_t){1, &header};
    status = amqp_basic_publish(p->conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(p->cfg->exchange),
                                amqp_cstring_bytes(p->cfg->queue), 1, 0, &props, (amqp_bytes_t){size, (void *)body});
    if (status != AMQP_STATUS_OK) {
        mw_log(MW_LOG_ERROR, "submit", "publish failed: %s", amqp_error_string2(status));
        return MW_ERR_BROKER;
    }
    return wait_confirm(p, p->next_seq++);
}
