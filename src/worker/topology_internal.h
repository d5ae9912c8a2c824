/* Declaring the topology on a connection; see include/mediaworker/topology.h for the shape. */
#ifndef MEDIAWORKER_WORKER_TOPOLOGY_INTERNAL_H
#define MEDIAWORKER_WORKER_TOPOLOGY_INTERNAL_H

#include <amqp.h>

#include "mediaworker/config.h"

/* What declaring learns, kept by the caller from one connection to the next. Start it zeroed. */
struct mw_topology_state {
    int channel_reopened;       /* the last declare had a refused declaration close MW_AMQP_CHANNEL, open
                                 * again now but without its confirm mode, prefetch and consumer */
    unsigned no_empty_delete;   /* tiers (bit tier - 1) whose queue refuses an if-empty delete (quorum) */
};

/*
 * Declares exchanges, queues, bindings and the retry tiers on MW_AMQP_CHANNEL, handling queues that exist
 * with other arguments (topology.c). 0 or MW_ERR_BROKER (logged).
 */
int mw_topology_declare(amqp_connection_state_t conn, const struct mw_config *cfg, const int *delays_s, int tiers,
                        struct mw_topology_state *state);

#endif
