/*
 * The job processes of a worker, shared by its slots.
 *
 * A slot holds a delivery from the moment it arrives until its verdict reaches the broker; a job process is
 * needed only while the job runs. Slots take a process for the job and give it back before they report,
 * so with more slots than processes (the default is twice as many) a process starts the next job while the
 * Data Service is still answering for the last one, instead of waiting with its core idle.
 *
 * With MW_ISOLATION=none there are no processes, and the pool only bounds how many jobs run at once.
 */
#ifndef MEDIAWORKER_JOBPOOL_H
#define MEDIAWORKER_JOBPOOL_H

#include <stdatomic.h>

#include "mediaworker/config.h"
#include "mediaworker/jobproc.h"
#include "mediaworker/metrics.h"

struct mw_jobpool;

/*
 * Creates a pool of count places; with process isolation each gets a job process now (one that cannot
 * start is logged and tried again when a job needs it). cfg and metrics must outlive the pool.
 * 0 or AVERROR(ENOMEM).
 */
int mw_jobpool_new(struct mw_jobpool **pool, const struct mw_config *cfg, struct mw_metrics *metrics, int count);

/*
 * Waits for a free place and takes it: its index, or AVERROR_EXIT once *stop is set (and
 * mw_jobpool_wake called, which wakes every waiter to see it).
 */
int mw_jobpool_acquire(struct mw_jobpool *pool, const atomic_int *stop);

/*
 * The job process of a taken place, started now if it has none: 0 and *p, or MW_ERR_JOB_LOST (reason
 * filled in) when no process could start.
 */
int mw_jobpool_process(struct mw_jobpool *pool, int index, struct mw_jobproc **p, char *reason, size_t reason_size);

/* Gives a place back. A process that died with its job is replaced first (unless draining), so that the
 * next job does not wait for one and /readyz does not count a worker without processes as ready. */
void mw_jobpool_release(struct mw_jobpool *pool, int index, int draining);

/*
 * Waits until no place is taken, or until *abandon is set. A job process dies with the thread that started
 * it (PR_SET_PDEATHSIG follows the thread, not the process), and any slot thread may have started the one
 * another slot's job runs in, so a slot thread must not end while a job may still run.
 */
void mw_jobpool_wait_idle(struct mw_jobpool *pool, const atomic_int *abandon);

/* Wakes every waiter, to look at its flag again. Thread-safe. */
void mw_jobpool_wake(struct mw_jobpool *pool);

/* Kills the job process of every taken place and wakes every waiter. Thread-safe. */
void mw_jobpool_abandon(struct mw_jobpool *pool);

/* Kills and reaps every process, frees the pool, sets *pool to NULL; accepts NULL. No place may be taken. */
void mw_jobpool_free(struct mw_jobpool **pool);

#endif
