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
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/jobproc.h"
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
    int fd;                       /* our end of the socketpair, -1 when none */
    int jobs;                     /* jobs given to the current process */
    int retire;                   /* the current process asked to be replaced */
    int retire_memory;            /* ... because its last job hit the memory cap (else: heap grown too big) */
};

/* The job process says it applied its limits and takes jobs; a configuration it cannot live with
 * (a memory cap below what its libraries map) makes it exit instead. */
static int wait_ready(struct mw_jobproc *p)
{
    char *text = NULL;
    size_t size;
    int ret = mw_jobproc_frame_read(p->fd, &text, &size, av_gettime_relative() + READY_TIMEOUT_US);

    if (ret == 0 && !strstr(text, "\"ready\""))
        ret = AVERROR_INVALIDDATA;
    av_free(text);
    return ret;
}

/* The job process talks to neither the broker nor the Data Service: a decoder exploited by a hostile file
 * must find no credentials, neither in its environment nor in the configuration it is sent (child_cfg).
 * The environment without credentials; everything else (PATH, locale, sanitizer options) passes. Built
 * before fork, since the child may not allocate. The strings stay environ's; only the array is ours. */
static char **child_environment(void)
{
    size_t count = 0, kept = 0;
    char **env;

    while (environ[count])
        count++;
    env = av_malloc_array(count + 1, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < count; i++)
        if (!mw_config_is_credential_variable(environ[i]))
            env[kept++] = environ[i];
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
    p->retire = 0;
    p->retire_memory = 0;
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
            kill(pid, SIGKILL);
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
        kill(pid, SIGKILL);
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

/* Turns how the process ended into our error and a reason for the report. */
static int classify_death(int status, char *reason, size_t size)
{
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) {
        snprintf(reason, size, "cpu limit");
        return MW_ERR_JOB_CPU;
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

static int send_job(struct mw_jobproc *p, const struct mw_job_message *message)
{
    cJSON *request = cJSON_CreateObject();
    char *text = NULL;
    int ret;

    if (!request || !cJSON_AddStringToObject(request, "body", message->body) ||
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
static int hand_over(struct mw_jobproc *p, const struct mw_job_message *message)
{
    int ret = AVERROR(EPIPE);

    for (int attempt = 0; attempt < 2; attempt++) {
        pid_t pid = atomic_load(&p->pid);

        if (pid && (p->retire || p->jobs >= p->cfg->jobs_per_process)) {
            mw_metrics_restart(p->metrics, p->retire_memory ? MW_RESTART_MEMORY : MW_RESTART_RECYCLE);
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
        ret = send_job(p, message);
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

int mw_jobproc_run(struct mw_jobproc *p, const struct mw_job_message *message, int64_t deadline,
                   mw_progress_fn progress, void *opaque, cJSON **result, char *reason, size_t reason_size)
{
    int ret;

    *result = NULL;
    reason[0] = '\0';
    ret = hand_over(p, message);
    if (ret < 0) {
        snprintf(reason, reason_size, "job process lost: %s", mw_err2str(ret));
        return MW_ERR_JOB_LOST;
    }
    for (;;) {
        cJSON *frame = NULL;
        char *text = NULL;
        size_t size;
        pid_t pid = atomic_load(&p->pid);

        ret = mw_jobproc_frame_read(p->fd, &text, &size, deadline + DEADLINE_GRACE_US);
        if (ret == AVERROR(ETIMEDOUT)) {
            mw_log(MW_LOG_ERROR, "jobproc", "job process %d passed the job deadline; killed", (int)pid);
            kill(pid, SIGKILL);
            reap(p, -1);
            mw_metrics_restart(p->metrics, MW_RESTART_TIMEOUT);
            snprintf(reason, reason_size, "timeout");
            return MW_ERR_DEADLINE;
        }
        if (ret < 0) {
            /* EOF or garbage: the process is dead or broken; make sure, then ask the kernel how it died. */
            if (ret != AVERROR_EOF)
                kill(pid, SIGKILL);
            ret = classify_death(reap(p, -1), reason, reason_size);
            mw_metrics_restart(p->metrics, ret == MW_ERR_JOB_CPU ? MW_RESTART_CPU : MW_RESTART_CRASH);
            mw_log(MW_LOG_ERROR, "jobproc", "job process %d died during the job: %s", (int)pid, reason);
            return ret;
        }
        frame = cJSON_ParseWithLengthOpts(text, size, NULL, 0);
        av_free(text);
        if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(frame, "progress"))) {
            forward_progress(cJSON_GetObjectItemCaseSensitive(frame, "progress"), progress, opaque);
        } else if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(frame, "ret"))) {
            ret = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(frame, "ret"));
            *result = cJSON_DetachItemFromObjectCaseSensitive(frame, "result");
            p->retire = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(frame, "retire"));
            p->retire_memory = p->retire && ret == MW_ERR_JOB_MEMORY;
            if (ret == MW_ERR_JOB_MEMORY)
                snprintf(reason, reason_size, "memory limit");
            cJSON_Delete(frame);
            return ret;
        }
        cJSON_Delete(frame);
    }
}
