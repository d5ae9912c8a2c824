/*
 * The supervisor side of a job process: spawn, hand over a job, read progress and the result, enforce the
 * deadline, and turn a death into a reason.
 *
 * The owning slot thread does all of this; only mw_jobproc_pid() and mw_jobproc_kill() are called from
 * other threads (shutdown), which is why pid is atomic. The process is killed with SIGKILL when the
 * deadline passes (plus a short grace, so the job's own deadline check usually fails it first with a
 * clean report), and reaped with waitpid() by the slot thread that spawned it.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/intreadwrite.h>
#include <libavutil/mem.h>
#include <libavutil/random_seed.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/jobproc.h"
#include "mediaworker/json.h"
#include "mediaworker/log.h"

/* The supervisor's kill comes this long after the job's own deadline, which normally fires first. */
#define DEADLINE_GRACE_US (2 * 1000000)
#define RETIRE_WAIT_US 1000000
#define READY_TIMEOUT_US (10 * 1000000)

extern char **environ;

struct mw_jobproc {
    const struct mw_config *cfg;
    struct mw_config child_cfg;   /* what job processes are sent: cfg without credentials */
    struct mw_metrics *metrics;   /* may be NULL */
    atomic_int pid;               /* 0 when no process is running */
    atomic_int killed_here;       /* the current process got a SIGKILL from the worker */
    int fd;                       /* our end of the socketpair, -1 when none */
    int jobs;                     /* jobs given to the current process */
    char identity[160];           /* whom its job children run as, from its ready frame */
};

/* A frame of the job process with its type byte split off; the payload is NUL-terminated. */
struct frame {
    char *data;
    char type;
    const char *payload;
    size_t size;
};

static int read_frame(struct mw_jobproc *p, struct frame *f, int64_t deadline)
{
    size_t size;
    int ret = mw_jobproc_frame_read(p->fd, &f->data, &size, deadline);

    if (ret < 0)
        return ret;
    if (size < 1) {
        av_freep(&f->data);
        return AVERROR_INVALIDDATA;
    }
    f->type = f->data[0];
    f->payload = f->data + 1;
    f->size = size - 1;
    return 0;
}

/* The job process says it applied its limits and takes jobs; a configuration it cannot live with
 * (a memory cap below what its libraries map) makes it exit instead. */
static int wait_ready(struct mw_jobproc *p)
{
    struct frame f = {0};
    cJSON *ready = NULL;
    const char *identity;
    int ret = read_frame(p, &f, av_gettime_relative() + READY_TIMEOUT_US);

    if (ret == 0 && (f.type != MW_JOBPROC_READY_FRAME || !(ready = cJSON_ParseWithLengthOpts(f.payload, f.size, NULL, 0)) ||
                     !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ready, "ready"))))
        ret = AVERROR_INVALIDDATA;
    identity = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ready, "job_identity"));
    if (ret == 0 && identity && strcmp(identity, p->identity)) {
        snprintf(p->identity, sizeof(p->identity), "%s", identity);
        /* Once per handle: a job running as root is what the default exists to prevent. */
        mw_metrics_gauge_set(p->metrics, MW_METRIC_JOBS_AS_ROOT, !strncmp(identity, "root", 4));
        if (!strncmp(identity, "root", 4))
            mw_log(MW_LOG_WARN, "jobproc", "job processes run as %s: the sandbox still applies, but a job "
                   "that escapes it is root (set MW_JOB_USER, give the container CAP_SETUID)", identity);
        else
            mw_log(MW_LOG_DEBUG, "jobproc", "job processes run as %s", identity);
    }
    cJSON_Delete(ready);
    av_free(f.data);
    return ret;
}

/* The job process talks to neither the broker nor the Data Service: a decoder exploited by a hostile file
 * must find no credentials, neither in its environment nor in the configuration it is sent (child_cfg).
 * The environment without credentials; everything else (PATH, locale, sanitizer options) passes. Built
 * before fork, since the child may not allocate. The strings stay environ's; only the array is ours. */
static char **child_environment(void)
{
    /* The job process forks a child per job: symbols bound once at its start are bound for every child,
     * where lazy binding would look each one up again in every child. */
    static char bind_now[] = "LD_BIND_NOW=1";
    size_t count = 0, kept = 0;
    int binds_now = 0;
    char **env;

    while (environ[count])
        count++;
    env = av_malloc_array(count + 2, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        if (mw_config_is_credential_variable(environ[i]))
            continue;
        binds_now |= !strncmp(environ[i], "LD_BIND_NOW=", 12);
        env[kept++] = environ[i];
    }
    if (!binds_now)
        env[kept++] = bind_now;
    env[kept] = NULL;
    return env;
}

static int spawn(struct mw_jobproc *p)
{
    static char exe[] = "/proc/self/exe";
    static char arg0[] = "mediaworker";
    static char arg1[] = "job-process";
    char *argv[] = {arg0, arg1, NULL};
    char **env;
    struct rlimit files;
    sigset_t none;
    int sv[2];
    int max_fd;
    pid_t pid;
    int ret;

    env = child_environment();
    if (!env)
        return AVERROR(ENOMEM);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        ret = AVERROR(errno);
        av_free(env);
        return ret;
    }
    sigemptyset(&none);
    max_fd = getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 65536 ? (int)files.rlim_cur : 65536;
    pid = fork();
    if (pid < 0) {
        ret = AVERROR(errno);
        close(sv[0]);
        close(sv[1]);
        av_free(env);
        return ret;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: the parent has threads. */
        if (dup2(sv[1], MW_JOBPROC_FD) < 0)
            _exit(126);
        /* Sockets of the broker and of libcurl have no FD_CLOEXEC; the job process must not hold them. */
        for (int fd = MW_JOBPROC_FD + 1; fd < max_fd; fd++)
            close(fd);
        /* Out of the terminal's process group (a Ctrl-C is the supervisor's to handle), and gone with it. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(exe, argv, env);
        _exit(127);
    }
    av_free(env);
    close(sv[1]);
    p->fd = sv[0];
    p->jobs = 0;
    atomic_store(&p->killed_here, 0);
    atomic_store(&p->pid, pid);
    mw_metrics_gauge_add(p->metrics, MW_METRIC_JOB_PROCESSES, 1);
    ret = mw_jobproc_frame_write(p->fd, &p->child_cfg, sizeof(p->child_cfg));
    if (ret == 0)
        ret = wait_ready(p);
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "jobproc", "job process %d did not start: %s", (int)pid, mw_err2str(ret));
        return MW_ERR_JOB_LOST;
    }
    mw_log(MW_LOG_DEBUG, "jobproc", "job process %d started", (int)pid);
    return 0;
}

/* Every SIGKILL the worker sends goes through here, so that any other one is known to come from outside. */
static void kill_process(struct mw_jobproc *p, pid_t pid)
{
    atomic_store(&p->killed_here, 1);
    kill(pid, SIGKILL);
}

static int reap(struct mw_jobproc *p, int64_t wait_us)
{
    pid_t pid = atomic_load(&p->pid);
    int64_t until = av_gettime_relative() + wait_us;
    int status = 0;

    if (!pid)
        return 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, wait_us < 0 ? 0 : WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR))
            break;
        if (got == 0 && av_gettime_relative() >= until) {
            kill_process(p, pid);
            wait_us = -1;
        } else if (got == 0) {
            av_usleep(10000);
        }
    }
    atomic_store(&p->pid, 0);
    mw_metrics_gauge_add(p->metrics, MW_METRIC_JOB_PROCESSES, -1);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    return status;
}

/* Ends the current process politely: on EOF it exits (and runs its own leak checks under ASan). */
static void retire(struct mw_jobproc *p)
{
    if (p->fd >= 0)
        shutdown(p->fd, SHUT_RDWR);
    reap(p, RETIRE_WAIT_US);
}

int mw_jobproc_new(struct mw_jobproc **pp, const struct mw_config *cfg, struct mw_metrics *metrics)
{
    struct mw_jobproc *p = av_mallocz(sizeof(*p));
    int ret;

    *pp = NULL;
    if (!p)
        return AVERROR(ENOMEM);
    p->cfg = cfg;
    p->child_cfg = *cfg;
    mw_config_clear_credentials(&p->child_cfg);
    p->metrics = metrics;
    p->fd = -1;
    ret = spawn(p);
    if (ret < 0) {
        mw_jobproc_free(&p);
        return ret;
    }
    *pp = p;
    return 0;
}

void mw_jobproc_free(struct mw_jobproc **pp)
{
    struct mw_jobproc *p = pp ? *pp : NULL;

    if (!p)
        return;
    retire(p);
    av_free(p);
    *pp = NULL;
}

int mw_jobproc_prepare(struct mw_jobproc *p)
{
    int ret;

    if (atomic_load(&p->pid))
        return 0;
    ret = spawn(p);
    if (ret < 0)
        reap(p, 0);
    return ret;
}

int mw_jobproc_pid(const struct mw_jobproc *p)
{
    return atomic_load(&((struct mw_jobproc *)p)->pid);
}

void mw_jobproc_kill(struct mw_jobproc *p)
{
    pid_t pid = atomic_load(&p->pid);

    if (pid > 0)
        kill_process(p, pid);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS:  return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE:  return "SIGFPE";
    case SIGILL:  return "SIGILL";
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGXCPU: return "SIGXCPU";
    case SIGXFSZ: return "SIGXFSZ";
    case SIGSYS:  return "SIGSYS";
    default:      return NULL;
    }
}

/* Turns how the process ended into our error and a reason for the report; killed_here: the worker sent
 * the SIGKILL it may have died of. */
static int classify_death(int status, int killed_here, char *reason, size_t size)
{
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) {
        snprintf(reason, size, "cpu limit");
        return MW_ERR_JOB_CPU;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !killed_here) {
        snprintf(reason, size, "killed by a SIGKILL the worker did not send (the kernel's OOM killer, an operator)");
        return MW_ERR_JOB_KILLED;
    }
    if (WIFSIGNALED(status)) {
        const char *name = signal_name(WTERMSIG(status));
        if (name)
            snprintf(reason, size, "crashed: %s", name);
        else
            snprintf(reason, size, "crashed: signal %d", WTERMSIG(status));
        return MW_ERR_JOB_CRASHED;
    }
    snprintf(reason, size, "crashed: exited with status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return MW_ERR_JOB_CRASHED;
}

static int send_job(struct mw_jobproc *p, const struct mw_job_message *message, const char *nonce)
{
    cJSON *request = cJSON_CreateObject();
    char *text = NULL;
    int ret;

    if (!request || !cJSON_AddStringToObject(request, "nonce", nonce) ||
        !cJSON_AddStringToObject(request, "body", message->body) ||
        !cJSON_AddStringToObject(request, "message_id", message->message_id) ||
        !cJSON_AddStringToObject(request, "request_id", message->request_id) ||
        !cJSON_AddStringToObject(request, "local_input", message->local_input ? message->local_input : "") ||
        !(text = cJSON_PrintUnformatted(request))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = mw_jobproc_frame_write(p->fd, text, strlen(text));
end:
    cJSON_free(text);
    cJSON_Delete(request);
    return ret;
}

/* Whether the process has ended, leaving it unreaped so that reap() does the bookkeeping. */
static int has_exited(pid_t pid)
{
    siginfo_t info = {0};

    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

/* Makes sure a fresh-enough process is running and has taken the job. */
static int hand_over(struct mw_jobproc *p, const struct mw_job_message *message, const char *nonce)
{
    int ret = AVERROR(EPIPE);

    for (int attempt = 0; attempt < 2; attempt++) {
        pid_t pid = atomic_load(&p->pid);

        if (pid && p->jobs >= p->cfg->jobs_per_process) {
            mw_metrics_restart(p->metrics, MW_RESTART_RECYCLE);
            retire(p);
        } else if (pid && has_exited(pid)) {
            /* It died while idle (killed from outside): not this job's fault. */
            mw_log(MW_LOG_WARN, "jobproc", "job process %d died while idle; replacing it", (int)pid);
            mw_metrics_restart(p->metrics, MW_RESTART_CRASH);
            reap(p, 0);
        }
        if (!atomic_load(&p->pid) && (ret = spawn(p)) < 0) {
            reap(p, 0);
            continue;
        }
        ret = send_job(p, message, nonce);
        if (ret == 0) {
            p->jobs++;
            return 0;
        }
        reap(p, 0);
    }
    return ret;
}

static void forward_progress(const cJSON *progress, mw_progress_fn callback, void *opaque)
{
    const cJSON *phase = cJSON_GetObjectItemCaseSensitive(progress, "phase");
    struct mw_progress report = {
        .phase = cJSON_IsString(phase) ? phase->valuestring : "",
        .done = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(progress, "done")),
        .total = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(progress, "total")),
        .percent = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(progress, "percent")),
        .speed = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(progress, "speed")),
        .eta_s = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(progress, "eta_s")),
    };

    if (callback && cJSON_IsObject(progress))
        callback(opaque, &report);
}

/* A fresh nonce per job: 128 bits from the kernel, in hex. */
static void make_nonce(char nonce[33])
{
    uint8_t bytes[16];

    if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes))
        for (size_t i = 0; i < sizeof(bytes); i += 4)
            AV_WN32(bytes + i, av_get_random_seed());
    for (size_t i = 0; i < sizeof(bytes); i++)
        snprintf(nonce + 2 * i, 3, "%02x", bytes[i]);
}

/* True when every path the result names lies in the job's own folder "<user>/<job>/". */
static int paths_are_the_jobs(const cJSON *result, const struct mw_job_message *message)
{
    char prefix[MW_JOB_ID_MAX + 32];
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(result, "path");
    const cJSON *output;
    size_t len;

    len = (size_t)snprintf(prefix, sizeof(prefix), "%" PRId64 "/%s/", message->user_id, message->job_id);
    if (!cJSON_IsNull(path) && (!cJSON_IsString(path) || strncmp(path->valuestring, prefix, len) ||
                                strstr(path->valuestring, "/../")))
        return 0;
    cJSON_ArrayForEach(output, cJSON_GetObjectItemCaseSensitive(result, "outputs")) {
        path = cJSON_GetObjectItemCaseSensitive(output, "path");
        if (!cJSON_IsString(path) || strncmp(path->valuestring, prefix, len) || strstr(path->valuestring, "/../"))
            return 0;
    }
    return 1;
}

/*
 * One frame relayed from the job's child. Returns 0 (progress forwarded, or the result taken into *result
 * and *job_ret), or a reason for calling it a protocol violation.
 */
static const char *take_child_frame(const struct frame *f, const struct mw_job_message *message, const char *nonce,
                                    mw_progress_fn progress, void *opaque, cJSON **result, int *job_ret,
                                    int *answered)
{
    char err[256];
    cJSON *frame = NULL;
    const cJSON *ret, *job_id, *report;
    const char *why = NULL;

    if (mw_json_parse_strict(f->payload, f->size, MW_JSON_ALLOW_CONTROL, &frame, err, sizeof(err)) < 0)
        why = "a frame that is not JSON";
    else if (!cJSON_IsObject(frame) ||
             strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(frame, "nonce")) ?: "", nonce))
        why = "a frame without this job's nonce";
    if (why) {
        cJSON_Delete(frame);
        return why;
    }
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(frame, "progress"))) {
        if (!*answered)
            forward_progress(cJSON_GetObjectItemCaseSensitive(frame, "progress"), progress, opaque);
        cJSON_Delete(frame);
        return NULL;
    }
    ret = cJSON_GetObjectItemCaseSensitive(frame, "ret");
    job_id = cJSON_GetObjectItemCaseSensitive(frame, "job_id");
    report = cJSON_GetObjectItemCaseSensitive(frame, "result");
    if (*answered)
        why = "a second result";
    else if (!cJSON_IsNumber(ret) || ret->valuedouble > 0 || ret->valuedouble < INT32_MIN)
        why = "a result without a valid return code";
    else if (!cJSON_IsString(job_id) || (job_id->valuestring[0] && strcmp(job_id->valuestring, message->job_id)))
        why = "the result of another job";
    else if (report && (!cJSON_IsObject(report) ||
                        strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(report, "job_id")) ?: "",
                               message->job_id) || !paths_are_the_jobs(report, message)))
        why = "a result naming another job or files outside its folder";
    if (!why) {
        *job_ret = (int)ret->valuedouble;
        *result = cJSON_DetachItemFromObjectCaseSensitive(frame, "result");
        *answered = 1;
    }
    cJSON_Delete(frame);
    return why;
}

/* Reads the end frame's wait status; -1 when the frame is not the one the warm process writes. */
static int end_status(const struct frame *f, const char *nonce, int *status, int *killed)
{
    cJSON *end = cJSON_ParseWithLengthOpts(f->payload, f->size, NULL, 0);
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(end, "status");
    int ok = cJSON_IsNumber(value) &&
             !strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(end, "nonce")) ?: "", nonce);

    *status = ok ? (int)value->valuedouble : 0;
    *killed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(end, "killed"));
    cJSON_Delete(end);
    return ok ? 0 : -1;
}

int mw_jobproc_run(struct mw_jobproc *p, const struct mw_job_message *message, int64_t deadline,
                   mw_progress_fn progress, void *opaque, cJSON **result, char *reason, size_t reason_size)
{
    char nonce[33];
    int answered = 0, job_ret = 0;
    int ret;

    *result = NULL;
    reason[0] = '\0';
    make_nonce(nonce);
    ret = hand_over(p, message, nonce);
    if (ret < 0) {
        snprintf(reason, reason_size, "job process lost: %s", mw_err2str(ret));
        return MW_ERR_JOB_LOST;
    }
    for (;;) {
        struct frame f = {0};
        const char *violation = NULL;
        pid_t pid = atomic_load(&p->pid);
        int status = 0, killed_by_warm = 0;

        ret = read_frame(p, &f, deadline + DEADLINE_GRACE_US);
        if (ret == AVERROR(ETIMEDOUT)) {
            mw_log(MW_LOG_ERROR, "jobproc", "job process %d passed the job deadline; killed", (int)pid);
            kill_process(p, pid);
            reap(p, -1);
            mw_metrics_restart(p->metrics, MW_RESTART_TIMEOUT);
            snprintf(reason, reason_size, "timeout");
            ret = MW_ERR_DEADLINE;
            break;
        }
        if (ret < 0) {
            /* EOF or a reset (it died with our job unread): the warm process is gone; garbage: it is broken,
             * so make sure. Then ask the kernel how it died. */
            if (ret != AVERROR_EOF && ret != AVERROR(ECONNRESET))
                kill_process(p, pid);
            status = reap(p, -1);
            ret = classify_death(status, atomic_load(&p->killed_here), reason, reason_size);
            mw_metrics_restart(p->metrics, ret == MW_ERR_JOB_CPU ? MW_RESTART_CPU : MW_RESTART_CRASH);
            mw_log(MW_LOG_ERROR, "jobproc", "job process %d died during the job: %s", (int)pid, reason);
            break;
        }
        if (f.type == MW_JOBPROC_CHILD_FRAME)
            violation = take_child_frame(&f, message, nonce, progress, opaque, result, &job_ret, &answered);
        else if (f.type != MW_JOBPROC_END_FRAME || end_status(&f, nonce, &status, &killed_by_warm) < 0)
            violation = "a frame the job process does not write";
        av_free(f.data);
        if (violation) {
            mw_log(MW_LOG_ERROR, "jobproc", "job process %d broke the protocol (%s); killed", (int)pid, violation);
            kill_process(p, pid);
            reap(p, -1);
            mw_metrics_restart(p->metrics, MW_RESTART_CRASH);
            snprintf(reason, reason_size, "protocol violation: %s", violation);
            cJSON_Delete(*result);
            *result = NULL;
            ret = MW_ERR_JOB_PROTOCOL;
            break;
        }
        if (f.type != MW_JOBPROC_END_FRAME)
            continue;
        /* The child is gone: its answer counts only if it also ended cleanly. */
        if (answered && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            ret = job_ret;
            if (ret == MW_ERR_JOB_MEMORY)
                snprintf(reason, reason_size, "memory limit");
            break;
        }
        cJSON_Delete(*result);
        *result = NULL;
        ret = classify_death(status, killed_by_warm || atomic_load(&p->killed_here), reason, reason_size);
        mw_metrics_restart(p->metrics, ret == MW_ERR_JOB_CPU ? MW_RESTART_CPU : MW_RESTART_CRASH);
        mw_log(MW_LOG_ERROR, "jobproc", "the job's process died: %s", reason);
        break;
    }
    return ret;
}
