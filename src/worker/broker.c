/*
 * The broker thread.
 *
 * Notes on the loop. rabbitmq-c does no background work: heartbeats are sent and checked only while this
 * thread is inside the library, so the loop never blocks anywhere else for longer than a quarter of the
 * heartbeat interval. It waits in poll() on the AMQP socket and on a self-pipe that mw_broker_settle() and
 * friends write to, so a verdict is applied at once instead of at the next poll timeout. Frames the
 * library has already buffered are drained before polling, since poll() cannot see them.
 *
 * Frames other than deliveries (publisher confirms, basic.cancel from consumer_cancel_notify, channel and
 * connection closes) surface from amqp_consume_message() as AMQP_STATUS_UNEXPECTED_STATE and are read
 * with amqp_simple_wait_frame_noblock(). Any channel or connection error ends the session: the connection
 * is dropped, every delivery of it becomes stale (the broker requeues them), and a new session starts
 * after a backoff, with the topology declared again.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <amqp.h>
#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "amqp_internal.h"
#include "mediaworker/backoff.h"
#include "mediaworker/broker.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/topology.h"
#include "topology_internal.h"

#define COMMAND_QUEUE_SIZE 1024
#define RECONNECT_BASE_MS 500
#define RECONNECT_CAP_MS 5000
#define SHUTDOWN_CONFIRM_WAIT_US (5 * 1000000)
#define FRAMES_PER_TURN 64

enum command_kind {
    CMD_VERDICT,
    CMD_EVENT,
};

struct command {
    enum command_kind kind;
    enum mw_verdict verdict;
    struct mw_delivery *delivery;
    char reason[512];
    char routing_key[64];
    char *body;
};

/* A republished copy waiting for its publisher confirm before the original (tag) is acked. */
struct pending_confirm {
    uint64_t seq;
    uint64_t tag;
};

struct mw_broker {
    const struct mw_config *cfg;
    struct mw_metrics *metrics;   /* may be NULL */
    struct mw_queue *deliveries;
    struct mw_queue *commands;
    int wake_pipe[2];
    int prefetch;
    int delays_s[MW_TOPOLOGY_MAX_TIERS];
    int tiers;
    pthread_t thread;
    int started;
    atomic_uint_fast64_t generation;
    atomic_int stop;
    atomic_int cancel;

    /* All the following fields belong to the broker thread (read by others only after the join). */
    amqp_connection_state_t conn;
    int next_url;
    uint64_t next_seq;
    struct pending_confirm *pending;
    size_t pending_count, pending_size;
    int consuming;
    char consumer_tag[256];
    struct mw_broker_stats stats;
};

void mw_delivery_free(struct mw_delivery **pd)
{
    struct mw_delivery *d = pd ? *pd : NULL;

    if (!d)
        return;
    av_free(d->body);
    av_free(d);
    *pd = NULL;
}

static void free_command(struct command **pcmd)
{
    struct command *cmd = *pcmd;

    if (!cmd)
        return;
    mw_delivery_free(&cmd->delivery);
    av_free(cmd->body);
    av_free(cmd);
    *pcmd = NULL;
}

int mw_broker_new(struct mw_broker **pb, const struct mw_config *cfg, struct mw_queue *deliveries, int prefetch,
                  struct mw_metrics *metrics)
{
    struct mw_broker *b = av_mallocz(sizeof(*b));
    char err[256];
    int ret;

    *pb = NULL;
    if (!b)
        return AVERROR(ENOMEM);
    b->wake_pipe[0] = b->wake_pipe[1] = -1;
    b->cfg = cfg;
    b->metrics = metrics;
    b->deliveries = deliveries;
    b->prefetch = prefetch;
    ret = mw_topology_parse_delays(cfg->retry_delays, b->delays_s, MW_TOPOLOGY_MAX_TIERS, err, sizeof(err));
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "broker", "%s", err);
        goto fail;
    }
    b->tiers = ret;
    ret = mw_queue_new(&b->commands, COMMAND_QUEUE_SIZE);
    if (ret < 0)
        goto fail;
    if (pipe(b->wake_pipe) < 0) {
        ret = AVERROR(errno);
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(b->wake_pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(b->wake_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    *pb = b;
    return 0;
fail:
    mw_broker_free(&b);
    return ret;
}

int mw_broker_tiers(const struct mw_broker *b)
{
    return b->tiers;
}

uint64_t mw_broker_generation(const struct mw_broker *b)
{
    return atomic_load(&((struct mw_broker *)b)->generation);
}

static void wake(struct mw_broker *b)
{
    ssize_t written = write(b->wake_pipe[1], "x", 1);

    (void)written; /* a full pipe already means "wake up" */
}

static void drain_wake_pipe(struct mw_broker *b)
{
    char buf[64];

    while (read(b->wake_pipe[0], buf, sizeof(buf)) > 0)
        ;
}

void mw_broker_settle(struct mw_broker *b, struct mw_delivery *d, enum mw_verdict verdict, const char *reason)
{
    struct command *cmd = av_mallocz(sizeof(*cmd));

    if (!cmd) {
        /* Without the verdict the delivery stays unacked; the broker redelivers it after a reconnect. */
        mw_log(MW_LOG_ERROR, "broker", "out of memory settling delivery %llu", (unsigned long long)d->tag);
        mw_delivery_free(&d);
        return;
    }
    cmd->kind = CMD_VERDICT;
    cmd->verdict = verdict;
    cmd->delivery = d;
    snprintf(cmd->reason, sizeof(cmd->reason), "%s", reason ? reason : "");
    if (mw_queue_push(b->commands, cmd, -1) < 0)
        free_command(&cmd);
    wake(b);
}

void mw_broker_publish_event(struct mw_broker *b, const char *routing_key, const char *body)
{
    struct command *cmd;

    if (!b->cfg->events_exchange[0])
        return;
    cmd = av_mallocz(sizeof(*cmd));
    if (!cmd || !(cmd->body = av_strdup(body))) {
        av_free(cmd);
        return;
    }
    cmd->kind = CMD_EVENT;
    snprintf(cmd->routing_key, sizeof(cmd->routing_key), "%s", routing_key);
    /* Events are advisory; a full queue means the broker is far behind and progress can be skipped. */
    if (mw_queue_push(b->commands, cmd, 0) < 0)
        free_command(&cmd);
    wake(b);
}

void mw_broker_cancel(struct mw_broker *b)
{
    atomic_store(&b->cancel, 1);
    wake(b);
}

/* ---- broker thread ---- */

static int publish_copy(struct mw_broker *b, const struct mw_delivery *d, const char *exchange,
                        const char *routing_key, int failures, const char *reason)
{
    amqp_table_entry_t headers[3];
    amqp_basic_properties_t props = {0};
    int count = 0;
    int status;

    headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes("x-mw-attempt"),
                                            {AMQP_FIELD_KIND_I32, {.i32 = failures}}};
    if (d->request_id[0])
        headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes("X-Request-ID"),
                                                {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(d->request_id)}}};
    if (reason[0])
        headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes("x-mw-error"),
                                                {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(reason)}}};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    props.headers = (amqp_table_t){count, headers};
    if (d->original_message_id_len) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = (amqp_bytes_t){d->original_message_id_len, (void *)d->original_message_id};
    }
    status = amqp_basic_publish(b->conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(exchange),
                                amqp_cstring_bytes(routing_key), 0, 0, &props,
                                (amqp_bytes_t){d->body_size, d->body});
    if (status != AMQP_STATUS_OK) {
        mw_log(MW_LOG_WARN, "broker", "publish to %s failed: %s", routing_key, amqp_error_string2(status));
        return MW_ERR_BROKER;
    }
    if (b->pending_count == b->pending_size) {
        size_t size = b->pending_size ? 2 * b->pending_size : 16;
        struct pending_confirm *grown = av_realloc_array(b->pending, size, sizeof(*grown));
        if (!grown)
            return AVERROR(ENOMEM);
        b->pending = grown;
        b->pending_size = size;
    }
    b->pending[b->pending_count++] = (struct pending_confirm){b->next_seq++, d->tag};
    return 0;
}

static int dead_letter(struct mw_broker *b, const struct mw_delivery *d, int failures, const char *reason)
{
    char dlx[MW_TOPOLOGY_NAME_MAX];

    mw_topology_dead_exchange(b->cfg, dlx, sizeof(dlx));
    b->stats.dead_lettered++;
    mw_metrics_add(b->metrics, MW_METRIC_DEAD_LETTERS, 1);
    mw_log(MW_LOG_WARN, "broker", "message %s dead-lettered: %s", d->message_id, reason);
    return publish_copy(b, d, dlx, b->cfg->queue, failures, reason);
}

/* Retries and dead letters are counted here, where the verdict meets the delivery's real attempt count:
 * a retry verdict on the last tier becomes a dead letter, and a verdict of a lost connection is neither. */
static int apply_verdict(struct mw_broker *b, struct command *cmd)
{
    struct mw_delivery *d = cmd->delivery;
    char queue[MW_TOPOLOGY_NAME_MAX];
    int failures = d->failures + 1;
    int status = AMQP_STATUS_OK;
    int tier;

    if (d->generation != atomic_load(&b->generation)) {
        b->stats.stale_verdicts++;
        return 0;
    }
    switch (cmd->verdict) {
    case MW_VERDICT_ACK:
        status = amqp_basic_ack(b->conn, MW_AMQP_CHANNEL, d->tag, 0);
        b->stats.acked++;
        break;
    case MW_VERDICT_REQUEUE:
        status = amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, d->tag, 0, 1);
        b->stats.requeued++;
        break;
    case MW_VERDICT_RETRY:
        tier = mw_topology_retry_tier(failures, b->tiers);
        if (tier) {
            mw_topology_retry_queue(b->cfg, tier, queue, sizeof(queue));
            b->stats.retried++;
            mw_metrics_add(b->metrics, MW_METRIC_RETRIES, 1);
            mw_log(MW_LOG_WARN, "broker", "message %s to %s after %d failed attempt(s): %s", d->message_id, queue,
                   failures, cmd->reason);
            return publish_copy(b, d, "", queue, failures, cmd->reason);
        }
        /* The retries are used up. */
        return dead_letter(b, d, failures, cmd->reason);
    case MW_VERDICT_DEAD:
        return dead_letter(b, d, failures, cmd->reason);
    }
    if (status != AMQP_STATUS_OK) {
        mw_log(MW_LOG_WARN, "broker", "ack/nack failed: %s", amqp_error_string2(status));
        return MW_ERR_BROKER;
    }
    return 0;
}

static int publish_event(struct mw_broker *b, const struct command *cmd)
{
    amqp_basic_properties_t props = {0};
    int status;

    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 1;
    status = amqp_basic_publish(b->conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(b->cfg->events_exchange),
                                amqp_cstring_bytes(cmd->routing_key), 0, 0, &props, amqp_cstring_bytes(cmd->body));
    /* In confirm mode every publish takes a sequence number, confirmed or not. */
    b->next_seq++;
    if (status != AMQP_STATUS_OK) {
        mw_log(MW_LOG_WARN, "broker", "event publish failed: %s", amqp_error_string2(status));
        return MW_ERR_BROKER;
    }
    return 0;
}

/* Applies every queued command; with no connection (conn NULL) they are all stale and dropped. */
static int run_commands(struct mw_broker *b)
{
    struct command *cmd;
    int ret = 0;

    while (mw_queue_pop(b->commands, (void **)&cmd, 0) == 0) {
        if (ret == 0 && b->conn)
            ret = cmd->kind == CMD_EVENT ? publish_event(b, cmd) : apply_verdict(b, cmd);
        else if (cmd->kind == CMD_VERDICT)
            b->stats.stale_verdicts++;
        free_command(&cmd);
    }
    return ret;
}

static int on_confirm(struct mw_broker *b, uint64_t seq, int multiple, int ok)
{
    size_t kept = 0;
    int ret = 0;

    for (size_t i = 0; i < b->pending_count; i++) {
        struct pending_confirm *p = &b->pending[i];
        int status;

        if (multiple ? p->seq > seq : p->seq != seq) {
            b->pending[kept++] = *p;
            continue;
        }
        /* The copy is safe in its queue: the original can go. A refused copy puts the original back. */
        status = ok ? amqp_basic_ack(b->conn, MW_AMQP_CHANNEL, p->tag, 0)
                    : amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, p->tag, 0, 1);
        if (!ok)
            mw_log(MW_LOG_WARN, "broker", "broker refused a republished copy; original requeued");
        if (status != AMQP_STATUS_OK && !ret)
            ret = MW_ERR_BROKER;
    }
    b->pending_count = kept;
    return ret;
}

/*
 * The trust boundary for what the AMQP properties say: values a client may have chosen (a request id often
 * comes from a user's browser). A message id that is not a printable ASCII id refuses the message (the slot
 * dead-letters it with this reason; it is never processed under a mangled id); a request id that is not one
 * is dropped with a warning, and the job gets a fresh one. The message id's original bytes are kept only
 * for the republished copies, which go back to the broker unchanged.
 */
static void read_ids(const amqp_basic_properties_t *props, const amqp_table_t *headers, struct mw_delivery *d)
{
    const char *why = NULL;

    if (props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        d->original_message_id_len = props->message_id.len < sizeof(d->original_message_id)
                                         ? props->message_id.len : sizeof(d->original_message_id);
        memcpy(d->original_message_id, props->message_id.bytes, d->original_message_id_len);
        if (mw_text_check(props->message_id.bytes, props->message_id.len, sizeof(d->message_id) - 1, MW_TEXT_ID,
                          &why) < 0)
            snprintf(d->refused, sizeof(d->refused), "message_id %s", why);
        else
            snprintf(d->message_id, sizeof(d->message_id), "%.*s", (int)props->message_id.len,
                     (const char *)props->message_id.bytes);
    }
    if (mw_amqp_header_text(headers, "X-Request-ID", MW_TEXT_ID, d->request_id, sizeof(d->request_id), &why) < 0)
        mw_log(MW_LOG_WARN, "broker", "header X-Request-ID %s: ignored, the job gets a fresh request id", why);
}

static int on_delivery(struct mw_broker *b, const amqp_envelope_t *env)
{
    const amqp_basic_properties_t *props = &env->message.properties;
    const amqp_table_t *headers = props->_flags & AMQP_BASIC_HEADERS_FLAG ? &props->headers : NULL;
    struct mw_delivery *d = av_mallocz(sizeof(*d));
    int64_t failures = 0;

    if (!d || !(d->body = av_malloc(env->message.body.len + 1))) {
        av_free(d);
        amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, env->delivery_tag, 0, 1);
        return AVERROR(ENOMEM);
    }
    memcpy(d->body, env->message.body.bytes, env->message.body.len);
    d->body[env->message.body.len] = '\0';
    d->body_size = env->message.body.len;
    d->generation = atomic_load(&b->generation);
    d->tag = env->delivery_tag;
    d->redelivered = env->redelivered;
    d->received_us = av_gettime_relative();
    read_ids(props, headers, d);
    if (mw_amqp_header_int(headers, "x-mw-attempt", &failures) && failures > 0 && failures < 1000)
        d->failures = (int)failures;
    b->stats.delivered++;
    b->stats.redelivered += d->redelivered;
    if (mw_queue_push(b->deliveries, d, 0) < 0) {
        /* Prefetch bounds what is in flight, so this means the slots are shutting down. */
        amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, d->tag, 0, 1);
        mw_delivery_free(&d);
    }
    return 0;
}

static int on_other_frame(struct mw_broker *b)
{
    amqp_frame_t frame;
    int status = amqp_simple_wait_frame_noblock(b->conn, &frame, &(struct timeval){0, 0});

    if (status == AMQP_STATUS_TIMEOUT)
        return 0;
    if (status != AMQP_STATUS_OK) {
        mw_log(MW_LOG_WARN, "broker", "connection lost: %s", amqp_error_string2(status));
        return MW_ERR_BROKER;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (frame.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *ack = frame.payload.method.decoded;
        return on_confirm(b, ack->delivery_tag, ack->multiple, 1);
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *nack = frame.payload.method.decoded;
        return on_confirm(b, nack->delivery_tag, nack->multiple, 0);
    }
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_message_t message;
        amqp_rpc_reply_t reply = amqp_read_message(b->conn, frame.channel, &message, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL)
            return mw_amqp_check(reply, "read returned message");
        amqp_destroy_message(&message);
        return 0;
    }
    case AMQP_BASIC_CANCEL_METHOD:
        mw_log(MW_LOG_WARN, "broker", "the broker cancelled our consumer (queue deleted or moved); reconnecting");
        return MW_ERR_BROKER;
    case AMQP_CHANNEL_CLOSE_METHOD:
        return mw_amqp_check((amqp_rpc_reply_t){AMQP_RESPONSE_SERVER_EXCEPTION, frame.payload.method, 0}, "channel");
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return mw_amqp_check((amqp_rpc_reply_t){AMQP_RESPONSE_SERVER_EXCEPTION, frame.payload.method, 0},
                             "connection");
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
        mw_log(MW_LOG_WARN, "broker", "the broker blocked publishing (resource alarm)");
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        mw_log(MW_LOG_INFO, "broker", "the broker unblocked publishing");
        return 0;
    default:
        return 0;
    }
}

/* Reads what is available without blocking: deliveries, confirms, closes. */
static int read_frames(struct mw_broker *b)
{
    for (int i = 0; i < FRAMES_PER_TURN; i++) {
        amqp_envelope_t env;
        amqp_rpc_reply_t reply;
        int ret;

        amqp_maybe_release_buffers(b->conn);
        reply = amqp_consume_message(b->conn, &env, &(struct timeval){0, 0}, 0);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            ret = on_delivery(b, &env);
            amqp_destroy_envelope(&env);
        } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   reply.library_error == AMQP_STATUS_TIMEOUT) {
            return 0;
        } else if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                   reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            ret = on_other_frame(b);
        } else {
            return mw_amqp_check(reply, "consume");
        }
        if (ret < 0)
            return ret;
        if (!amqp_frames_enqueued(b->conn) && !amqp_data_in_buffer(b->conn) && i > 0)
            return 0;
    }
    return 0;
}

/* Waits for socket data, a command, or the heartbeat tick. Returns 1 when the socket needs servicing. */
static int wait_io(struct mw_broker *b, int timeout_ms)
{
    struct pollfd fds[2] = {
        {.fd = amqp_get_sockfd(b->conn), .events = POLLIN},
        {.fd = b->wake_pipe[0], .events = POLLIN},
    };
    int n;

    if (amqp_frames_enqueued(b->conn) || amqp_data_in_buffer(b->conn))
        return 1;
    n = poll(fds, 2, timeout_ms);
    if (fds[1].revents)
        drain_wake_pipe(b);
    /* A timeout also lets the library send or check heartbeats. */
    return n == 0 || fds[0].revents;
}

static int tick_ms(const struct mw_broker *b)
{
    int hb = b->cfg->heartbeat_s;

    return hb > 0 && hb * 250 < 1000 ? hb * 250 : 1000;
}

/* The flag is mirrored in the metrics, where /readyz reads it. */
static void set_consuming(struct mw_broker *b, int consuming)
{
    b->consuming = consuming;
    mw_metrics_gauge_set(b->metrics, MW_METRIC_BROKER_CONSUMING, consuming);
}

static int session_open(struct mw_broker *b)
{
    amqp_basic_consume_ok_t *consume;
    int ret;

    ret = mw_amqp_connect(b->cfg, b->cfg->heartbeat_s, &b->next_url, &b->conn);
    if (ret < 0)
        return ret;
    ret = mw_topology_declare(b->conn, b->cfg, b->delays_s, b->tiers);
    if (ret < 0)
        return ret;
    amqp_confirm_select(b->conn, MW_AMQP_CHANNEL);
    if ((ret = mw_amqp_check_last(b->conn, "confirm.select")) < 0)
        return ret;
    amqp_basic_qos(b->conn, MW_AMQP_CHANNEL, 0, (uint16_t)b->prefetch, 0);
    if ((ret = mw_amqp_check_last(b->conn, "basic.qos")) < 0)
        return ret;
    b->next_seq = 1;
    b->pending_count = 0;
    atomic_fetch_add(&b->generation, 1);
    if (atomic_load(&b->cancel))
        return 0;
    consume = amqp_basic_consume(b->conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(b->cfg->queue), amqp_empty_bytes, 0,
                                 0, 0, amqp_empty_table);
    if ((ret = mw_amqp_check_last(b->conn, "basic.consume")) < 0)
        return ret;
    snprintf(b->consumer_tag, sizeof(b->consumer_tag), "%.*s", (int)consume->consumer_tag.len,
             (const char *)consume->consumer_tag.bytes);
    set_consuming(b, 1);
    mw_log(MW_LOG_INFO, "broker", "consuming %s (prefetch %d)", b->cfg->queue, b->prefetch);
    return 0;
}

/* Deliveries that arrive while the cancel is in flight are queued by the library and still handed out;
 * the slots, already draining, leave them unacked and the close requeues them. */
static int cancel_consumer(struct mw_broker *b)
{
    set_consuming(b, 0);
    amqp_basic_cancel(b->conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(b->consumer_tag));
    if (mw_amqp_check_last(b->conn, "basic.cancel") < 0)
        return MW_ERR_BROKER;
    mw_log(MW_LOG_INFO, "broker", "stopped consuming %s", b->cfg->queue);
    return 0;
}

static int session_run(struct mw_broker *b)
{
    int ret;

    while (!atomic_load(&b->stop)) {
        if ((ret = run_commands(b)) < 0)
            return ret;
        if (atomic_load(&b->cancel) && b->consuming && (ret = cancel_consumer(b)) < 0)
            return ret;
        if (wait_io(b, tick_ms(b)) && (ret = read_frames(b)) < 0)
            return ret;
    }
    return 0;
}

/* Orderly end of a healthy session: apply the last verdicts, let confirms arrive, requeue the rest. */
static void session_shutdown(struct mw_broker *b)
{
    int64_t until = av_gettime_relative() + SHUTDOWN_CONFIRM_WAIT_US;
    int ret;

    ret = run_commands(b);
    if (ret == 0 && b->consuming)
        ret = cancel_consumer(b);
    while (ret == 0 && b->pending_count && av_gettime_relative() < until)
        if (wait_io(b, 100))
            ret = read_frames(b);
    if (ret == 0) {
        /* Tag 0 with multiple set covers every delivery still unacknowledged on the channel. */
        amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, 0, 1, 1);
    }
    mw_amqp_close(&b->conn);
}

/* Sleeps for the reconnect backoff, dropping (stale) commands meanwhile; returns early on stop. */
static void backoff_wait(struct mw_broker *b, int attempt)
{
    int64_t until = av_gettime_relative() +
                    1000 * mw_backoff_delay_ms(attempt, RECONNECT_BASE_MS, RECONNECT_CAP_MS, mw_backoff_random());

    while (!atomic_load(&b->stop)) {
        int64_t left_ms = (until - av_gettime_relative()) / 1000;
        struct pollfd fd = {.fd = b->wake_pipe[0], .events = POLLIN};

        run_commands(b);
        if (left_ms <= 0)
            break;
        if (poll(&fd, 1, (int)left_ms) > 0)
            drain_wake_pipe(b);
    }
}

static void *broker_main(void *arg)
{
    struct mw_broker *b = arg;
    int attempt = 0;

    while (!atomic_load(&b->stop)) {
        int ret = session_open(b);

        if (ret == 0) {
            attempt = 0;
            ret = session_run(b);
            if (ret == 0 && atomic_load(&b->stop)) {
                session_shutdown(b);
                break;
            }
        }
        if (b->conn) {
            /* The connection is broken or refused us: nothing polite to say to it. */
            amqp_destroy_connection(b->conn);
            b->conn = NULL;
        }
        set_consuming(b, 0);
        b->pending_count = 0;
        b->stats.reconnects++;
        mw_metrics_add(b->metrics, MW_METRIC_BROKER_RECONNECTS, 1);
        mw_log(MW_LOG_WARN, "broker", "broker connection lost or refused; reconnecting (attempt %d)", attempt + 1);
        backoff_wait(b, attempt++);
    }
    run_commands(b);
    return NULL;
}

int mw_broker_start(struct mw_broker *b)
{
    int ret = pthread_create(&b->thread, NULL, broker_main, b);

    if (ret)
        return AVERROR(ret);
    b->started = 1;
    return 0;
}

void mw_broker_stop(struct mw_broker *b, struct mw_broker_stats *stats)
{
    if (b->started) {
        atomic_store(&b->stop, 1);
        wake(b);
        pthread_join(b->thread, NULL);
        b->started = 0;
    }
    mw_queue_close(b->commands);
    run_commands(b);
    if (stats)
        *stats = b->stats;
}

void mw_broker_free(struct mw_broker **pb)
{
    struct mw_broker *b = pb ? *pb : NULL;

    if (!b)
        return;
    if (b->commands)
        mw_broker_stop(b, NULL);
    mw_queue_free(&b->commands);
    for (int i = 0; i < 2; i++)
        if (b->wake_pipe[i] >= 0)
            close(b->wake_pipe[i]);
    av_free(b->pending);
    av_free(b);
    *pb = NULL;
}
