/*
 * Job processes: where the libav work of the queue worker runs.
 *
 * A job process is this same binary exec'd as the hidden `job-process` command (exec rather than a bare
 * fork, so it starts from a clean state no matter which threads the supervisor runs). It talks to its slot
 * thread over a socketpair on fd 3 with length-prefixed frames: a 4-byte big-endian length, then the
 * payload. The first frame is the supervisor's struct mw_config, byte for byte (same binary, same
 * layout), so flags given to `serve` reach the job process too. The job process stays warm and forks one
 * confined child per job (jobchild.c). Per job: the supervisor sends {"nonce", "body", "message_id",
 * "request_id", "local_input"}, with a fresh random nonce; it gets back 'C' frames relayed from the child
 * (zero or more {"nonce", "progress": {...}} and exactly one {"nonce", "job_id", "ret", "result"}) and one
 * 'E' frame from the warm process once the child has exited. An answer that does not match the job (wrong
 * nonce or job id, a second result, outputs outside the job's folder, a frame that is not JSON) is a
 * protocol violation: the job process is killed and only that job fails, with JOB_PROTOCOL.
 *
 * Limits: RLIMIT_AS (MW_JOB_MEMORY_MB), RLIMIT_CPU per job (MW_JOB_CPU_SECONDS, SIGXCPU), RLIMIT_FSIZE
 * (MW_JOB_FILE_SIZE_MB), and the job deadline, enforced by the supervisor with SIGKILL. A child that dies
 * fails only its job, with the reason; the warm process is replaced when it dies itself, and recycled
 * after MW_JOBS_PER_PROCESS jobs.
 */
#ifndef MEDIAWORKER_JOBPROC_H
#define MEDIAWORKER_JOBPROC_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mediaworker/config.h"
#include "mediaworker/job.h"
#include "mediaworker/metrics.h"

/* Largest frame either side accepts; a job message is at most 256 KiB and a report far less than this. */
#define MW_JOBPROC_MAX_FRAME (16 << 20)

/* The fd number the job process finds its socket on. */
#define MW_JOBPROC_FD 3

/*
 * Writes one frame (length prefix + payload) to fd, all or nothing from the reader's point of view.
 * Returns 0 or AVERROR(errno) (AVERROR(EPIPE) when the peer is gone; SIGPIPE is never raised).
 */
int mw_jobproc_frame_write(int fd, const void *data, size_t size);

/* The first byte of each frame the job process sends the supervisor: who wrote the rest. */
#define MW_JOBPROC_READY_FRAME 'R'   /* the warm process: set up, takes jobs ({"ready", "job_identity", ...}) */
#define MW_JOBPROC_CHILD_FRAME 'C'   /* relayed from the job's child, as the child wrote it (untrusted) */
#define MW_JOBPROC_END_FRAME   'E'   /* the warm process: the child is gone ({"nonce", "status"}) */

/* As mw_jobproc_frame_write, with the type byte first; written by the warm process only. */
int mw_jobproc_frame_write_typed(int fd, char type, const void *data, size_t size);

/*
 * Reads one frame into a new NUL-terminated buffer *data (free with av_free) of *size bytes, waiting until
 * deadline (av_gettime_relative() microseconds; 0 = forever). Returns 0, AVERROR_EOF when the peer closed
 * before a frame started, AVERROR(ETIMEDOUT), AVERROR_INVALIDDATA for a frame over MW_JOBPROC_MAX_FRAME or
 * cut short, or AVERROR(errno).
 */
int mw_jobproc_frame_read(int fd, char **data, size_t *size, int64_t deadline);

/* One job as the queue delivered it; the job process parses it again with the same ids. */
struct mw_job_message {
    const char *job_id;           /* what the supervisor's own parse made of it: the answer must say the same */
    int64_t user_id;
    const char *body;
    size_t body_size;
    const char *message_id;       /* "" when the message had none */
    const char *request_id;       /* the job's request id (given or generated) */
    const char *local_input;      /* the supervisor's download of file_info.url, "" for path inputs */
};

struct mw_jobproc;

/*
 * Starts a job process for cfg (which must outlive the handle). metrics (may be NULL; must outlive the
 * handle) counts live processes and replacements by cause. Returns 0 and *p, or AVERROR(errno) with *p
 * NULL. Call from any thread; the spawn only uses async-signal-safe calls between fork and exec.
 */
int mw_jobproc_new(struct mw_jobproc **p, const struct mw_config *cfg, struct mw_metrics *metrics);

/* Kills (SIGKILL) and reaps the process, frees the handle, sets *p to NULL; accepts NULL. */
void mw_jobproc_free(struct mw_jobproc **p);

/*
 * Runs one job message in the job process (starting a new process first when the last one died or was
 * used up). progress (may be NULL) is called on this thread for each progress frame. On return *result
 * holds the report's new_file (NULL when the process died before giving one) and reason a short text for
 * the failure when the process was lost: "crashed: SIGSEGV", "timeout", "memory limit", "cpu limit".
 * Returns the job's own return value, or MW_ERR_JOB_CRASHED, MW_ERR_DEADLINE, MW_ERR_JOB_MEMORY,
 * MW_ERR_JOB_CPU when the process died, MW_ERR_JOB_LOST when no process could take the job.
 */
int mw_jobproc_run(struct mw_jobproc *p, const struct mw_job_message *message, int64_t deadline,
                   mw_progress_fn progress, void *opaque, cJSON **result, char *reason, size_t reason_size);

/*
 * Starts a process when none is running (the last one died with its job), so that the next job does not
 * wait for one and /readyz counts it. 0, or MW_ERR_JOB_LOST (logged; the next job tries again).
 */
int mw_jobproc_prepare(struct mw_jobproc *p);

/* The current process id, or 0 when none is running. Thread-safe (for shutdown: kill from another thread). */
int mw_jobproc_pid(const struct mw_jobproc *p);

/* Sends SIGKILL to the current process, if any. Thread-safe; the owner notices on its next read. */
void mw_jobproc_kill(struct mw_jobproc *p);

/* The job-process side: serves jobs on fd until the supervisor closes it. Returns an exit status. */
int mw_jobproc_child_main(int fd);

#endif
