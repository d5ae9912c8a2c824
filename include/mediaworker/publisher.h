/*
 * A synchronous job publisher for `mediaworker submit` (operators, the demo, tests): its own connection,
 * the topology declared, publisher confirms on. Not used by `serve`, whose publishing goes through the
 * broker thread.
 */
#ifndef MEDIAWORKER_PUBLISHER_H
#define MEDIAWORKER_PUBLISHER_H

#include <stddef.h>

#include "mediaworker/config.h"

struct mw_publisher;

/* Connects and declares the topology. 0, or MW_ERR_BROKER / MW_ERR_CONFIG (logged) with *p NULL. */
int mw_publisher_new(struct mw_publisher **p, const struct mw_config *cfg);

/* Frees the publisher (closing its connection) and sets *p to NULL; accepts NULL. */
void mw_publisher_free(struct mw_publisher **p);

/*
 * Publishes one persistent job message to the work exchange and waits until the broker confirms it.
 * Returns 0, or MW_ERR_BROKER when the broker refused it or the connection failed (logged).
 */
int mw_publisher_send(struct mw_publisher *p, const char *body, size_t size, const char *message_id,
                      const char *request_id);

#endif
