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
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <amqp.h>
#include <libavutil/error.h>
#include <libavutil/macros.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "amqp_internal.h"
#include "mediaworker/attempt.h"
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
#define COPY_SEQ_HEADER "x-mw-copy-seq"
#define ATTEMPT_SIG_HEADER "x-mw-attempt-sig"
#define HELD_COPY_FIRST_WAIT_US (1 * 1000000)
#define HELD_COPY_LONGEST_WAIT_US (30 * 1000000)

enum command_kind {
    CMD_VERDICT,
    CMD_EVENT,
};

struct command {
    enum command_kind kind;
    struct mw_verdict verdict;
    struct mw_delivery *delivery;
    char reason[512];
    char routing_key[64];
    char *body;
};

/*
 * A republished copy (retry tier or dead letter) waiting for its publisher confirm. It is published
 * mandatory, so a copy no queue took comes back as basic.return before its confirm; the original delivery
 * is acked only for a copy confirmed and not returned. A copy that still finds no queue after the topology
 * was declared again, or that the broker refused, is held: published again later, its original unacked
 * meanwhile (requeued by the broker if the worker stops or loses the connection).
 */
struct pending_copy {
    uint64_t seq;
    int returned;                 /* basic.return seen for this publish */
    int published;                /* times this copy was published (a second try follows a redeclare) */
    int holds;                    /* times it was held */
    int64_t held_until_us;        /* held: published again at this time; 0 while in flight */
    struct mw_delivery *d;        /* the original, owned here until it is settled */
    int attempts;
    int to_tier;                  /* a retry tier's copy: its attempt count is signed */
    char exchange[MW_TOPOLOGY_NAME_MAX];
    char routing_key[MW_TOPOLOGY_NAME_MAX];
    char reason[512];
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
    uint8_t attempt_key[MW_ATTEMPT_KEY_SIZE];
    struct mw_topology_state topology;  /* the broker thread's */
    char problem[256];                  /* the broker thread's: why the last connect failed, "" */
    pthread_t thread;
    int started;
    atomic_uint_fast64_t generation;
    atomic_int stop;
    atomic_int cancel;

    /* All the following fields belong to the broker thread (read by others only after the join). */
    amqp_connection_state_t conn;
    int next_url;
    uint64_t next_seq;
    struct pending_copy *pending;
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
    mw_attempt_key(cfg, b->attempt_key);
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

const int *mw_broker_delays(const struct mw_broker *b)
{
    return b->delays_s;
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

void mw_broker_settle(struct mw_broker *b, struct mw_delivery *d, const struct mw_verdict *verdict,
                      const char *reason)
{
    struct command *cmd = av_mallocz(sizeof(*cmd));

    if (!cmd) {
        /* Without the verdict the delivery stays unacked; the broker redelivers it after a reconnect. */
        mw_log(MW_LOG_ERROR, "broker", "out of memory settling delivery %llu", (unsigned long long)d->tag);
        mw_delivery_free(&d);
        return;
    }
    cmd->kind = CMD_VERDICT;
    cmd->verdict = *verdict;
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

static int send_copy(struct mw_broker *b, struct pending_copy *copy)
{
    const struct mw_delivery *d = copy->d;
    amqp_table_entry_t headers[5];
    amqp_basic_properties_t props = {0};
    char sig[MW_ATTEMPT_SIG_SIZE];
    int count = 0;
    int status;
    int ret;

    if (copy->to_tier && (ret = mw_attempt_sign(b->attempt_key, copy->attempts, d->original_message_id,
                                                d->original_message_id_len, d->body, d->body_size, sig)) < 0)
        return ret;
    copy->seq = b->next_seq++;
    copy->returned = 0;
    copy->published++;
    headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes("x-mw-attempt"),
                                            {AMQP_FIELD_KIND_I32, {.i32 = copy->attempts}}};
    /* A dead letter's count is for people: published again from the DLQ, a message starts afresh. */
    if (copy->to_tier)
        headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes(ATTEMPT_SIG_HEADER),
                                                {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(sig)}}};
    /* Ties a basic.return to its copy: confirms of other copies may come first, returns carry no tag. */
    headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes(COPY_SEQ_HEADER),
                                            {AMQP_FIELD_KIND_I64, {.i64 = (int64_t)copy->seq}}};
    if (d->request_id[0])
        headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes("X-Request-ID"),
                                                {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(d->request_id)}}};
    if (copy->reason[0])
        headers[count++] = (amqp_table_entry_t){amqp_cstring_bytes("x-mw-error"),
                                                {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(copy->reason)}}};
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    props.headers = (amqp_table_t){count, headers};
    if (d->original_message_id_len) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = (amqp_bytes_t){d->original_message_id_len, (void *)d->original_message_id};
    }
    status = amqp_basic_publish(b->conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(copy->exchange),
                                amqp_cstring_bytes(copy->routing_key), 1, 0, &props,
                                (amqp_bytes_t){d->body_size, d->body});
    if (status != AMQP_STATUS_OK) {
        mw_log(MW_LOG_WARN, "broker", "publish to %s failed: %s", copy->routing_key, amqp_error_string2(status));
        return MW_ERR_BROKER;
    }
    return 0;
}

/* Takes cmd->delivery: publishes its copy and keeps the original until the copy is confirmed routed. */
static int publish_copy(struct mw_broker *b, struct command *cmd, const char *exchange, const char *routing_key)
{
    struct pending_copy *copy;

    if (b->pending_count == b->pending_size) {
        size_t size = b->pending_size ? 2 * b->pending_size : 16;
        struct pending_copy *grown = av_realloc_array(b->pending, size, sizeof(*grown));
        if (!grown)
            return AVERROR(ENOMEM);
        b->pending = grown;
        b->pending_size = size;
    }
    copy = &b->pending[b->pending_count++];
    /* Tier queues are reached through the default exchange, the dead-letter queue through its own. */
    *copy = (struct pending_copy){.d = cmd->delivery, .attempts = cmd->verdict.attempts, .to_tier = !exchange[0]};
    cmd->delivery = NULL;
    snprintf(copy->exchange, sizeof(copy->exchange), "%s", exchange);
    snprintf(copy->routing_key, sizeof(copy->routing_key), "%s", routing_key);
    snprintf(copy->reason, sizeof(copy->reason), "%s", cmd->reason);
    return send_copy(b, copy);
}

/* Forgets every copy in flight; their originals are void with the connection (the broker requeues them). */
static void drop_pending(struct mw_broker *b)
{
    for (size_t i = 0; i < b->pending_count; i++)
        mw_delivery_free(&b->pending[i].d);
    b->pending_count = 0;    mw_metrics_gauge_set(b->metrics, MW_METRIC_COPIES_STUCK, 0);
}

static int dead_letter(struct mw_broker *b, struct command *cmd)
{
    char dlx[MW_TOPOLOGY_NAME_MAX];

    mw_topology_dead_exchange(b->cfg, dlx, sizeof(dlx));
    b->stats.dead_lettered++;
    mw_metrics_add(b->metrics, MW_METRIC_DEAD_LETTERS, 1);
    mw_log(MW_LOG_WARN, "broker", "message %s dead-lettered: %s", cmd->delivery->message_id, cmd->reason);
    return publish_copy(b, cmd, dlx, b->cfg->queue);
}

/* Carries out a verdict as it was decided; one of an older connection is void (the broker requeued it). */
static int apply_verdict(struct mw_broker *b, struct command *cmd)
{
    const struct mw_verdict *v = &cmd->verdict;
    struct mw_delivery *d = cmd->delivery;
    char queue[MW_TOPOLOGY_NAME_MAX];
    int status;

    if (d->generation != atomic_load(&b->generation)) {
        b->stats.stale_verdicts++;
        return 0;
    }
    switch (v->action) {
    case MW_ACTION_ACK:
        status = amqp_basic_ack(b->conn, MW_AMQP_CHANNEL, d->tag, 0);
        b->stats.acked++;
        break;
    case MW_ACTION_RETRY:
        if (v->tier >= 1 && v->tier <= b->tiers) {
            mw_topology_retry_queue(b->cfg, v->tier, queue, sizeof(queue));
            b->stats.retried++;
            mw_metrics_add(b->metrics, MW_METRIC_RETRIES, 1);
            mw_log(MW_LOG_WARN, "broker", "message %s to %s after %d failed attempt(s): %s", d->message_id, queue,
                   v->attempts, cmd->reason);
            return publish_copy(b, cmd, "", queue);
        }
        return dead_letter(b, cmd);
    case MW_ACTION_DEAD:
        return dead_letter(b, cmd);
    default:
        /* REQUEUE, and the verdicts that are not settlements (run, report), which never get here. */
        status = amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, d->tag, 0, 1);
        b->stats.requeued++;
        break;
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

/* The copy's original is settled: acked, its copy safe in its queue. */
static int ack_original(struct mw_broker *b, struct pending_copy *copy)
{
    int status = amqp_basic_ack(b->conn, MW_AMQP_CHANNEL, copy->d->tag, 0);

    mw_delivery_free(&copy->d);
    return status == AMQP_STATUS_OK ? 0 : MW_ERR_BROKER;
}

/* 1 while any copy is held: /readyz says the worker is not ready, the metric says why. */
static void update_held_gauge(struct mw_broker *b)
{
    int held = 0;

    for (size_t i = 0; i < b->pending_count; i++)
        held |= b->pending[i].held_until_us != 0;
    mw_metrics_gauge_set(b->metrics, MW_METRIC_COPIES_STUCK, held);
}

/*
 * Requeuing the original of a copy no queue takes would only bring it back at once, to the same end, as
 * fast as the broker can deliver. Held instead, it waits with its original unacked, and the prefetch
 * bounds how many are held: a worker whose every copy is stuck stops taking messages by itself.
 */
static void hold_copy(struct mw_broker *b, struct pending_copy *copy, const char *why)
{
    int64_t wait_us = (int64_t)HELD_COPY_FIRST_WAIT_US << FFMIN(copy->holds, 5);

    wait_us = FFMIN(wait_us, HELD_COPY_LONGEST_WAIT_US);
    copy->holds++;
    copy->held_until_us = av_gettime_relative() + wait_us;
    mw_log(MW_LOG_ERROR, "broker", "copy of message %s to %s %s; its original is held unacknowledged and the copy "
           "published again in %d s", copy->d->message_id, copy->routing_key, why, (int)(wait_us / 1000000));
    update_held_gauge(b);
}

/* The topology is declared again before a copy that found no queue is published once more. */
static int redeclare_and_send(struct mw_broker *b, struct pending_copy *copy)
{
    int ret;

    if ((ret = mw_topology_declare(b->conn, b->cfg, b->delays_s, b->tiers, &b->topology)) < 0)
        return ret;
    /* A channel opened again has lost its confirm mode and consumer: start a fresh session instead
     * (the original, unacked, goes back to the queue). */
    if (b->topology.channel_reopened)
        return MW_ERR_BROKER;
    return send_copy(b, copy);
}

/*
 * A returned copy found no queue: someone deleted a tier queue, the dead-letter queue or a binding while
 * we ran. The topology is declared again and the copy published once more; returned again, it is held.
 * Kept whatever happens: a failure ends the session, whose end frees every copy in flight.
 */
static int on_returned_copy(struct mw_broker *b, struct pending_copy *copy)
{
    mw_metrics_add(b->metrics, MW_METRIC_UNROUTABLE_COPIES, 1);
    if (copy->published == 1) {
        mw_log(MW_LOG_WARN, "broker", "copy of message %s to %s was returned: no queue took it; declaring the "
               "topology again", copy->d->message_id, copy->routing_key);
        return redeclare_and_send(b, copy);
    }
    hold_copy(b, copy, "was returned again after declaring the topology (no queue takes it)");
    return 0;
}

/* Publishes again the held copies whose wait is over. */
static int send_held_copies(struct mw_broker *b)
{
    int64_t now = av_gettime_relative();
    int ret = 0;

    for (size_t i = 0; i < b->pending_count && ret == 0; i++) {
        struct pending_copy *copy = &b->pending[i];

        if (!copy->held_until_us || copy->held_until_us > now)
            continue;
        copy->held_until_us = 0;
        mw_log(MW_LOG_INFO, "broker", "publishing the held copy of message %s to %s again", copy->d->message_id,
               copy->routing_key);
        ret = copy->returned ? redeclare_and_send(b, copy) : send_copy(b, copy);
    }
    return ret;
}

static size_t copies_in_flight(const struct mw_broker *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->pending_count; i++)
        n += b->pending[i].held_until_us == 0;
    return n;
}

static int on_confirm(struct mw_broker *b, uint64_t seq, int multiple, int ok)
{
    size_t kept = 0;
    int ret = 0;

    for (size_t i = 0; i < b->pending_count; i++) {
        struct pending_copy *copy = &b->pending[i];
        int keep = 0;
        int step;

        if (ret < 0 || copy->held_until_us || (multiple ? copy->seq > seq : copy->seq != seq)) {
            b->pending[kept++] = *copy;
            continue;
        }
        if (!ok) {
            /* A queue at its length limit that rejects publishes, for one. */
            hold_copy(b, copy, "was refused by the broker (nack)");
            keep = 1;
            step = 0;
        } else if (copy->returned) {
            keep = 1;
            step = on_returned_copy(b, copy);
        } else {
            step = ack_original(b, copy);
        }
        if (keep)
            b->pending[kept++] = *copy;
        if (step < 0)
            ret = step;
    }
    b->pending_count = kept;
    update_held_gauge(b);
    return ret;
}

/* Marks the copy a basic.return names (by the sequence header we gave it); its confirm follows. */
static void on_return(struct mw_broker *b, const amqp_message_t *message)
{
    const amqp_basic_properties_t *props = &message->properties;
    int64_t seq = 0;

    if (!(props->_flags & AMQP_BASIC_HEADERS_FLAG) || !mw_amqp_header_int(&props->headers, COPY_SEQ_HEADER, &seq))
        return;
    for (size_t i = 0; i < b->pending_count; i++)
        if (b->pending[i].seq == (uint64_t)seq)
            b->pending[i].returned = 1;
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

/* The failed attempts a delivery has behind it: what a copy of ours says, else 0 (see attempt.h). */
static int read_attempts(const struct mw_broker *b, const amqp_table_t *headers, const struct mw_delivery *d)
{
    char sig[MW_ATTEMPT_SIG_SIZE];
    const char *why = NULL;
    int64_t attempts = 0;

    if (!mw_amqp_header_int(headers, "x-mw-attempt", &attempts))
        return 0;
    if (attempts > 0 && attempts <= MW_TOPOLOGY_MAX_TIERS + 1 &&
        mw_amqp_header_text(headers, ATTEMPT_SIG_HEADER, MW_TEXT_ID, sig, sizeof(sig), &why) == 1 &&
        mw_attempt_verify(b->attempt_key, (int)attempts, d->original_message_id, d->original_message_id_len, d->body,
                          d->body_size, sig, strlen(sig)))
        return (int)attempts;
    mw_log(MW_LOG_WARN, "broker", "message %s: x-mw-attempt %" PRId64 " is not one this queue's workers signed; "
           "counted as a first attempt", d->message_id, attempts);
    return 0;
}

static int on_delivery(struct mw_broker *b, const amqp_envelope_t *env)
{
    const amqp_basic_properties_t *props = &env->message.properties;
    const amqp_table_t *headers = props->_flags & AMQP_BASIC_HEADERS_FLAG ? &props->headers : NULL;
    struct mw_delivery *d = av_mallocz(sizeof(*d));

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
    d->failures = read_attempts(b, headers, d);
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
        on_return(b, &message);
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
    ret = mw_topology_declare(b->conn, b->cfg, b->delays_s, b->tiers, &b->topology);
    if (ret < 0)
        return ret;
    amqp_confirm_select(b->conn, MW_AMQP_CHANNEL);
    if ((ret = mw_amqp_check_last(b->conn, "confirm.select")) < 0)
        return ret;
    amqp_basic_qos(b->conn, MW_AMQP_CHANNEL, 0, (uint16_t)b->prefetch, 0);
    if ((ret = mw_amqp_check_last(b->conn, "basic.qos")) < 0)
        return ret;
    b->next_seq = 1;
    drop_pending(b);
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
        if ((ret = run_commands(b)) < 0 || (ret = send_held_copies(b)) < 0)
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
    while (ret == 0 && copies_in_flight(b) && av_gettime_relative() < until)
        if (wait_io(b, 100))
            ret = read_frames(b);
    if (ret == 0) {
        /* Tag 0 with multiple set covers every delivery still unacknowledged on the channel. */
        amqp_basic_nack(b->conn, MW_AMQP_CHANNEL, 0, 1, 1);
    }
    mw_amqp_close(&b->conn);
    /* Held copies, and copies whose confirm did not come in time: their originals went back with the nack. */
    drop_pending(b);
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

/*
 * A broker that refuses us (wrong password, vhost, permissions) or cannot be reached is retried every few
 * seconds for as long as it takes; the log gets one error line per distinct failure, not one per try, and
 * /readyz says what is wrong. NULL: connected.
 */
static void set_problem(struct mw_broker *b, const char *failure)
{
    const char *text = failure && *failure ? failure : failure ? "connection failed" : "";

    if (!strcmp(text, b->problem))
        return;
    if (*text)
        mw_log(MW_LOG_ERROR, "broker", "cannot use the broker: %s; retrying with backoff (the same failure is "
               "not logged again until it changes)", text);
    snprintf(b->problem, sizeof(b->problem), "%s", text);
    mw_metrics_broker_problem(b->metrics, text);
}

static void *broker_main(void *arg)
{
    struct mw_broker *b = arg;
    int attempt = 0;

    while (!atomic_load(&b->stop)) {
        int ret;

        mw_amqp_quiet(1);
        ret = session_open(b);
        mw_amqp_quiet(0);
        if (ret == 0) {
            attempt = 0;
            set_problem(b, NULL);
            ret = session_run(b);
            if (ret == 0 && atomic_load(&b->stop)) {
                session_shutdown(b);
                break;
            }
        } else {
            set_problem(b, mw_amqp_last_failure());
        }
        if (b->conn) {
            /* The connection is broken or refused us: nothing polite to say to it. */
            amqp_destroy_connection(b->conn);
            b->conn = NULL;
        }
        set_consuming(b, 0);
        drop_pending(b);
        b->stats.reconnects++;
        mw_metrics_add(b->metrics, MW_METRIC_BROKER_RECONNECTS, 1);
        mw_log(attempt ? MW_LOG_DEBUG : MW_LOG_WARN, "broker",
               "broker connection lost or refused; reconnecting (attempt %d)", attempt + 1);
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
