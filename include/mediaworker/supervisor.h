/*
 * `mediaworker serve`: the queue worker.
 *
 * Starts the broker thread and MW_SLOTS slot threads (each with its pre-started job process), then waits
 * for SIGTERM or SIGINT. On the first signal it stops consuming, lets the jobs in flight finish for up to
 * MW_SHUTDOWN_GRACE seconds, then kills what still runs and requeues those messages, and returns 0. A
 * second signal skips the rest of the grace.
 */
#ifndef MEDIAWORKER_SUPERVISOR_H
#define MEDIAWORKER_SUPERVISOR_H

#include "mediaworker/config.h"

/*
 * Runs the worker until a signal stops it. Call from the main thread before any other thread exists (it
 * blocks SIGTERM and SIGINT so that every thread inherits the mask). Returns 0 after a clean shutdown, or
 * a negative error when the worker could not start (logged).
 */
int mw_supervisor_run(const struct mw_config *cfg);

#endif
