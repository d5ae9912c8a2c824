/*
 * The job process pool: a fixed array of places, each with its process (NULL until one could start), taken
 * and given back under one mutex. Spawning and replacing happen outside the mutex: a spawn waits for the
 * new process to say it is ready, and other slots must not wait on that.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/jobpool.h"
#include "mediaworker/log.h"

struct place {
    struct mw_jobproc *process;
    int taken;
    uint64_t last_taken;      /* when it was last taken, in takings of the pool */
};

struct mw_jobpool {
    const struct mw_config *cfg;
    struct mw_metrics *metrics;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int count;
    struct place *places;
    uint64_t takings;
};

int mw_jobpool_new(struct mw_jobpool **out, const struct mw_config *cfg, struct mw_metrics *metrics, int count)
{
    struct mw_jobpool *pool = av_mallocz(sizeof(*pool));

    *out = NULL;
    if (!pool || !(pool->places = av_calloc((size_t)count, sizeof(*pool->places)))) {
        av_free(pool);
        return AVERROR(ENOMEM);
    }
    pool->cfg = cfg;
    pool->metrics = metrics;
    pool->count = count;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->freed, NULL);
    /* Pre-started, so the first jobs do not pay for it. */
    for (int i = 0; cfg->isolation == MW_ISOLATION_PROCESS && i < count; i++) {
        int ret = mw_jobproc_new(&pool->places[i].process, cfg, metrics);
        if (ret < 0)
            mw_log(MW_LOG_ERROR, "jobpool", "job process %d cannot start: %s", i, mw_err2str(ret));
    }
    *out = pool;
    return 0;
}

int mw_jobpool_acquire(struct mw_jobpool *pool, const atomic_int *stop)
{
    int index = -1;

    pthread_mutex_lock(&pool->lock);
    while (!atomic_load(stop)) {
        /* The free place taken least recently: every process gets jobs, so one that died while idle is
         * found and replaced at its next turn (mw_jobproc_run starts a new one first) instead of never. */
        for (int i = 0; i < pool->count; i++)
            if (!pool->places[i].taken && (index < 0 || pool->places[i].last_taken < pool->places[index].last_taken))
                index = i;
        if (index >= 0)
            break;
        pthread_cond_wait(&pool->freed, &pool->lock);
    }
    if (index >= 0) {
        pool->places[index].taken = 1;
        pool->places[index].last_taken = ++pool->takings;
    }
    pthread_mutex_unlock(&pool->lock);
    return index >= 0 ? index : AVERROR_EXIT;
}

int mw_jobpool_process(struct mw_jobpool *pool, int index, struct mw_jobproc **p, char *reason, size_t reason_size)
{
    struct place *place = &pool->places[index];

    /* The place is taken, so only this thread writes its process; the lock is for mw_jobpool_abandon. */
    if (!place->process) {
        struct mw_jobproc *started = NULL;
        int ret = mw_jobproc_new(&started, pool->cfg, pool->metrics);

        if (ret < 0) {
            snprintf(reason, reason_size, "cannot start a job process: %s", mw_err2str(ret));
            return MW_ERR_JOB_LOST;
        }
        pthread_mutex_lock(&pool->lock);
        place->process = started;
        pthread_mutex_unlock(&pool->lock);
    }
    *p = place->process;
    return 0;
}

void mw_jobpool_release(struct mw_jobpool *pool, int index, int draining)
{
    struct place *place = &pool->places[index];

    if (place->process && !mw_jobproc_pid(place->process) && !draining)
        mw_jobproc_prepare(place->process);
    pthread_mutex_lock(&pool->lock);
    place->taken = 0;
    /* Both kinds of waiters wait on it: slots for a place, ending slot threads for all of them. */
    pthread_cond_broadcast(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

static int any_taken(const struct mw_jobpool *pool)
{
    for (int i = 0; i < pool->count; i++)
        if (pool->places[i].taken)
            return 1;
    return 0;
}

void mw_jobpool_wait_idle(struct mw_jobpool *pool, const atomic_int *abandon)
{
    pthread_mutex_lock(&pool->lock);
    while (any_taken(pool) && !atomic_load(abandon))
        pthread_cond_wait(&pool->freed, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}

void mw_jobpool_wake(struct mw_jobpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pthread_cond_broadcast(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

void mw_jobpool_abandon(struct mw_jobpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    for (int i = 0; i < pool->count; i++)
        if (pool->places[i].taken && pool->places[i].process)
            mw_jobproc_kill(pool->places[i].process);
    pthread_cond_broadcast(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

void mw_jobpool_free(struct mw_jobpool **pp)
{
    struct mw_jobpool *pool = pp ? *pp : NULL;

    if (!pool)
        return;
    for (int i = 0; i < pool->count; i++)
        mw_jobproc_free(&pool->places[i].process);
    pthread_cond_destroy(&pool->freed);
    pthread_mutex_destroy(&pool->lock);
    av_free(pool->places);
    av_free(pool);
    *pp = NULL;
}
