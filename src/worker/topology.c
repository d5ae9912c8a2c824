/*
 * Declaring the topology. Every declaration is idempotent, so each worker does it at start and after
 * every reconnect, and a fresh broker (or one whose definitions were lost) is put right by whichever
 * worker connects first. A queue that already exists with other arguments (say classic where
 * MW_QUEUE_TYPE asks for quorum) makes the broker refuse the declaration; that is logged with the
 * variable to change, since no retry can fix it.
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

static int declare_queue(amqp_connection_state_t conn, const char *name, amqp_table_t args, const char *hint)
{
    char what[300];

    snprintf(what, sizeof(what), "declare queue %s%s", name, hint);
    amqp_queue_declare(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    return mw_amqp_check_last(conn, what);
}

static int bind_queue(amqp_connection_state_t conn, const char *queue, const char *exchange, const char *key)
{
    char what[300];

    snprintf(what, sizeof(what), "bind %s to %s", queue, exchange);
    amqp_queue_bind(conn, MW_AMQP_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(key), amqp_empty_table);
    return mw_amqp_check_last(conn, what);
}

int mw_topology_declare(amqp_connection_state_t conn, const struct mw_config *cfg, const int *delays_s, int tiers)
{
    const char *queue_type = cfg->queue_type == MW_QUEUE_QUORUM ? "quorum" : "classic";
    const char *hint = " (does it exist with another type? see MW_QUEUE_TYPE)";
    char dlx[MW_TOPOLOGY_NAME_MAX];
    char name[MW_TOPOLOGY_NAME_MAX];
    amqp_table_entry_t type_entry = string_entry("x-queue-type", queue_type);
    amqp_table_t type_args = {1, &type_entry};
    int ret;

    mw_topology_dead_exchange(cfg, dlx, sizeof(dlx));
    if ((ret = declare_exchange(conn, cfg->exchange, "direct")) < 0 ||
        (ret = declare_queue(conn, cfg->queue, type_args, hint)) < 0 ||
        (ret = bind_queue(conn, cfg->queue, cfg->exchange, cfg->queue)) < 0 ||
        (ret = declare_exchange(conn, dlx, "direct")) < 0)
        return ret;
    mw_topology_dead_queue(cfg, name, sizeof(name));
    if ((ret = declare_queue(conn, name, type_args, hint)) < 0 || (ret = bind_queue(conn, name, dlx, cfg->queue)) < 0)
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
        if ((ret = declare_queue(conn, name, args, " (its delay changed? delete the tier queue)")) < 0)
            return ret;
    }
    if (cfg->events_exchange[0] && (ret = declare_exchange(conn, cfg->events_exchange, "topic")) < 0)
        return ret;
    return 0;
}
