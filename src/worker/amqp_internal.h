/*
 * rabbitmq-c glue shared by the broker thread, the topology and the submit publisher: connecting from the
 * configured URL list, turning amqp_rpc_reply_t into our errors at this edge, and header tables.
 * Everything here runs on the thread that owns the connection.
 */
#ifndef MEDIAWORKER_WORKER_AMQP_INTERNAL_H
#define MEDIAWORKER_WORKER_AMQP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

#include "mediaworker/config.h"
#include "mediaworker/text.h"

/* The one channel every connection of ours uses. */
#define MW_AMQP_CHANNEL 1

/*
 * Connects to the URLs of cfg->rabbitmq_url in turn, starting at *next_url (updated to the one after the
 * URL that answered, so reconnects rotate through a cluster), logs in with our client properties
 * (consumer_cancel_notify, publisher confirms) and opens MW_AMQP_CHANNEL. heartbeat_s 0 disables
 * heartbeats. Returns 0 and *conn, or MW_ERR_BROKER (logged) with *conn NULL.
 */
int mw_amqp_connect(const struct mw_config *cfg, int heartbeat_s, int *next_url, amqp_connection_state_t *conn);

/* Closes politely when possible and destroys the connection; accepts NULL; sets *conn to NULL. */
void mw_amqp_close(amqp_connection_state_t *conn);

/*
 * While on (for the calling thread), the failures below are logged at debug, not warn: a broker thread
 * that reconnects every few seconds logs one error per distinct failure itself. Either way the last one is
 * kept for mw_amqp_last_failure() ("" when none since the flag was last turned on).
 */
void mw_amqp_quiet(int on);
const char *mw_amqp_last_failure(void);

/* 0 when reply is normal, else logs "<what>: <reason>" and returns MW_ERR_BROKER. */
int mw_amqp_check(amqp_rpc_reply_t reply, const char *what);

/* Checks the reply of the last RPC on conn (after amqp_queue_declare() and friends). */
int mw_amqp_check_last(amqp_connection_state_t conn, const char *what);

/*
 * Reads the string header name (case-insensitive), a value from outside: 1 when present and it passes
 * mw_text_check() for cls within size - 1 bytes (copied into out), 0 when absent, MW_ERR_INVALID_MESSAGE
 * with *reason when present but not acceptable. out is "" unless 1 is returned.
 */
int mw_amqp_header_text(const amqp_table_t *headers, const char *name, enum mw_text_class cls, char *out,
                        size_t size, const char **reason);

/* Reads the integer header name; 1 when found, 0 when absent or not an integer. */
int mw_amqp_header_int(const amqp_table_t *headers, const char *name, int64_t *value);

#endif
