/*
 * A bounded FIFO of pointers between threads (mutex + condition variables).
 *
 * It is the only way work and verdicts travel between the broker thread and the slot threads. The queue
 * never owns what it carries: whoever pops an item owns it, and whoever frees the queue first drains it
 * (mw_queue_pop with a zero timeout) if items may remain.
 */
#ifndef MEDIAWORKER_QUEUE_H
#define MEDIAWORKER_QUEUE_H

#include <stddef.h>

struct mw_queue;

/* Creates a queue holding at most capacity items. 0 or AVERROR(ENOMEM)/AVERROR(EINVAL); *q NULL on failure. */
int mw_queue_new(struct mw_queue **q, size_t capacity);

/* Frees the queue (not its items) and sets *q to NULL; accepts NULL. No thread may be using it. */
void mw_queue_free(struct mw_queue **q);

/*
 * Appends item, waiting up to timeout_ms for room (negative = forever, 0 = never wait). Returns 0,
 * AVERROR(EAGAIN) when the queue stayed full, AVERROR_EOF when it is closed. On failure the caller still
 * owns item.
 */
int mw_queue_push(struct mw_queue *q, void *item, int timeout_ms);

/*
 * Removes the oldest item into *item, waiting up to timeout_ms (negative = forever, 0 = never wait).
 * Returns 0, AVERROR(EAGAIN) on timeout, AVERROR_EOF when the queue is closed and empty.
 */
int mw_queue_pop(struct mw_queue *q, void **item, int timeout_ms);

/* Closes the queue: pushes fail from now on, pops drain what is left and then return AVERROR_EOF. */
void mw_queue_close(struct mw_queue *q);

/* Number of items queued now (a snapshot). */
size_t mw_queue_length(struct mw_queue *q);

#endif
