/*
 * Declaring the topology. Every declaration is idempotent, so each worker does it at start and after
 * every reconnect, and a fresh broker (or one whose definitions were lost) is put right by whichever
 * worker connects first. A queue that already exists with other arguments: see declare_queue().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_internal.h"
#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/topology.h"
#include "topology_internal.h"

int mw_topology_parse_delays(const char *text, int *delays_s, int max, char *err, size_t err_size)
{
    const char *p = text;
    int count = 0;

    while (*p == ' ')
        p++;
    if (!*p)
        return 0;
    for (;;) {
        char *end;
        long value;

        errno = 0;
        value = strtol(p, &end, 10);
        if (errno || end == p || value < 1 || value > 86400 || count >= max) {
            snprintf(err, err_size, "MW_RETRY_DELAYS: expected up to %d comma-separated seconds (1-86400), got "
                     "\"%.64s\"", max, text);
            return MW_ERR_CONFIG;
        }
        delays_s[count++] = (int)value;
        while (*end == ' ')
            end++;
        if (!*end)
            return count;
        if (*end != ',') {
            snprintf(err, err_size, "MW_RETRY_DELAYS: unexpected \"%c\" in \"%.64s\"", *end, text);
            return MW_ERR_CONFIG;
        }
        p = end + 1;
    }
}

int mw_topology_retry_tier(int failures, int tiers)
{
    return failures >= 1 && failures <= tiers ? failures : 0;
}

void mw_topology_retry_queue(const struct mw_config *cfg, int tier, char *out, size_t size)
{
    snprintf(out, size, "%s.retry.%d", cfg->queue, tier);
}

void mw_topology_dead_queue(const struct mw_config *cfg, char *out, size_t size)
{
    snprintf(out, size, "%s.dead", cfg->queue);
}

void mw_topology_dead_exchange(const struct mw_config *cfg, char *out, size_t size)
{
    snprintf(out, size, "%s.dlx", cfg->exchange);
}

static amqp_table_entry_t string_entry(const char *key, const char *value)
{
    return (amqp_table_entry_t){amqp_cstring_bytes(key), {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes(value)}}};
}

static int declare_exchange(amqp_connection_state_t conn, const char *name, const char *type)
{
    char what[200];

    snprintf(what, sizeof(what), "declare exchange %s", name);
    amqp_exchange_declare(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(name), amqp_cstring_bytes(type), 0, 1, 0, 0,
                          amqp_empty_table);
    return mw_amqp_check_last(conn, what);
}

/* The broker's reason when reply is its channel.close for PRECONDITION_FAILED (arguments differ), else 0. */
static int precondition_failed(amqp_rpc_reply_t reply, char *text, size_t size)
{
    const amqp_channel_close_t *close = reply.reply.decoded;

    if (reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION || reply.reply.id != AMQP_CHANNEL_CLOSE_METHOD ||
        close->reply_code != AMQP_PRECONDITION_FAILED)
        return 0;
    snprintf(text, size, "%.*s", (int)close->reply_text.len, (const char *)close->reply_text.bytes);
    return 1;
}

/* After the broker closed the channel over a refused declaration: acknowledge, and open it again. */
static int reopen_channel(amqp_connection_state_t conn, struct mw_topology_state *state)
{
    amqp_channel_close_ok_t ok = {0};

    state->channel_reopened = 1;
    if (amqp_send_method(conn, MW_AMQP_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
        return MW_ERR_BROKER;
    amqp_channel_open(conn, MW_AMQP_CHANNEL);
    return mw_amqp_check_last(conn, "reopen the channel");
}

/*
 * A queue that exists with other arguments than ours (another MW_QUEUE_TYPE, a changed MW_RETRY_DELAYS) is
 * refused by the broker, and no retry fixes that. Rather than consume nothing until someone deletes queues
 * by hand: a retry tier that is empty is deleted and declared anew with our arguments (it holds nothing
 * but copies on their way back); any other queue, or a tier that still holds copies, is used as it is,
 * with a warning that names the queue and the argument (the broker's text says which). Its messages are
 * safe either way, and a tier that keeps its old delay gets ours at a later connect, once empty.
 *
 * "Empty" is the broker's if-empty delete, atomic with the delete. Quorum queues do not support it and
 * close the connection instead: such a tier is remembered in state and kept as it is from then on.
 */
static int declare_queue(amqp_connection_state_t conn, const char *name, amqp_table_t args, int tier,
                         struct mw_topology_state *state)
{
    unsigned tier_bit = tier ? 1u << (tier - 1) : 0;
    char why[256], what[300], refusal[256];
    amqp_rpc_reply_t reply;
    int ret;

    snprintf(what, sizeof(what), "declare queue %s", name);
    amqp_queue_declare(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    reply = amqp_get_rpc_reply(conn);
    if (!precondition_failed(reply, why, sizeof(why)))
        return mw_amqp_check(reply, what);
    if ((ret = reopen_channel(conn, state)) < 0)
        return ret;
    if (tier_bit && !(state->no_empty_delete & tier_bit)) {
        state->no_empty_delete |= tier_bit;
        amqp_queue_delete(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(name), 0, 1);
        reply = amqp_get_rpc_reply(conn);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            state->no_empty_delete &= ~tier_bit;
            mw_log(MW_LOG_INFO, "broker", "retry tier %s was empty and declared with other arguments (%s): "
                   "declared again with MW_RETRY_DELAYS and MW_QUEUE_TYPE", name, why);
            amqp_queue_declare(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
            return mw_amqp_check_last(conn, what);
        }
        /* PRECONDITION_FAILED: not empty. Anything else ends the connection, and the tier stays marked. */
        if (!precondition_failed(reply, refusal, sizeof(refusal)))
            return mw_amqp_check(reply, "delete an empty retry tier");
        state->no_empty_delete &= ~tier_bit;
        if ((ret = reopen_channel(conn, state)) < 0)
            return ret;
    }
    amqp_queue_declare(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(name), 1, 1, 0, 0, amqp_empty_table);
    if ((ret = mw_amqp_check_last(conn, what)) < 0)
        return ret;
    mw_log(MW_LOG_WARN, "broker", "queue %s exists with other arguments (%s); used as it is. %s", name, why,
           tier ? "Its copies wait its old delay; found empty at a later connect, it is declared again (docs/worker.md)"
                : "To apply MW_QUEUE_TYPE, move its messages elsewhere and delete it (docs/worker.md)");
    return 0;
}

static int bind_queue(amqp_connection_state_t conn, const char *queue, const char *exchange, const char *key)
{
    char what[300];

    snprintf(what, sizeof(what), "bind %s to %s", queue, exchange);
    amqp_queue_bind(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(key), amqp_empty_table);
    return mw_amqp_check_last(conn, what);
}

int mw_topology_declare(amqp_connection_state_t conn, const struct mw_config *cfg, const int *delays_s, int tiers,
                        struct mw_topology_state *state)
{
    const char *queue_type = cfg->queue_type == MW_QUEUE_QUORUM ? "quorum" : "classic";
    char dlx[MW_TOPOLOGY_NAME_MAX];
    char name[MW_TOPOLOGY_NAME_MAX];
    amqp_table_entry_t type_entry = string_entry("x-queue-type", queue_type);
    amqp_table_t type_args = {1, &type_entry};
    int ret;

    state->channel_reopened = 0;
    mw_topology_dead_exchange(cfg, dlx, sizeof(dlx));
    if ((ret = declare_exchange(conn, cfg->exchange, "direct")) < 0 ||
        (ret = declare_queue(conn, cfg->queue, type_args, 0, state)) < 0 ||
        (ret = bind_queue(conn, cfg->queue, cfg->exchange, cfg->queue)) < 0 ||
        (ret = declare_exchange(conn, dlx, "direct")) < 0)
        return ret;
    mw_topology_dead_queue(cfg, name, sizeof(name));
    if ((ret = declare_queue(conn, name, type_args, 0, state)) < 0 ||
        (ret = bind_queue(conn, name, dlx, cfg->queue)) < 0)
        return ret;
    for (int tier = 1; tier <= tiers; tier++) {
        /* The delay is a property of the queue, not of each message: per-message TTLs only expire at the
         * head of a queue, so mixed delays in one queue would hold short ones behind long ones. */
        amqp_table_entry_t entries[] = {
            type_entry,
            {amqp_cstring_bytes("x-message-ttl"), {AMQP_FIELD_KIND_I32, {.i32 = delays_s[tier - 1] * 1000}}},
            string_entry("x-dead-letter-exchange", cfg->exchange),
            string_entry("x-dead-letter-routing-key", cfg->queue),
        };
        amqp_table_t args = {sizeof(entries) / sizeof(entries[0]), entries};

        mw_topology_retry_queue(cfg, tier, name, sizeof(name));
        if ((ret = declare_queue(conn, name, args, tier, state)) < 0)
            return ret;
    }
    if (cfg->events_exchange[0] && (ret = declare_exchange(conn, cfg->events_exchange, "topic")) < 0)
        return ret;
    return 0;
}
