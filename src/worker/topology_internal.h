/* Declaring the topology on a connection; see include/mediaworker/topology.h for the shape. */
#ifndef MEDIAWORKER_WORKER_TOPOLOGY_INTERNAL_H
#define MEDIAWORKER_WORKER_TOPOLOGY_INTERNAL_H

#include <amqp.h>

#include "mediaworker/config.h"

/* Declares exchanges, queues, bindings and the retry tiers on MW_AMQP_CHANNEL. 0 or MW_ERR_BROKER (logged). */
int mw_topology_declare(amqp_connection_state_t conn, const struct mw_config *cfg, const int *delays_s, int tiers);

#endif
