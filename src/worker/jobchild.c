/*
 * The job-process side: a warm process that forks one confined child per job.
 *
 * The warm process receives the configuration, sets the limits every job inherits, loads the libraries and
 * then only waits for jobs: it never opens an upload, never decodes, and keeps nobody's data past their job:
 * it wipes every request, every parsed copy of one (cJSON's free is a wiping free in this process and its
 * children) and every frame it relays before freeing them, since the next job's child is forked with a copy
 * of this process's heap, freed blocks included. For each job
 * it forks a child, which prepares exactly that job's files while it still may (opens its one input,
 * creates its one output folder), then confines itself with that job's paths (see sandbox.h: an
 * unprivileged user, no new privileges, Landlock on those paths alone, a seccomp filter built with its own
 * pid) before it reads a byte of the upload. The child runs the job, answers, and exits: a hostile file can
 * neither reach another job's files nor leave anything behind in memory for the next user's job, and the
 * fork costs far less than starting a process (the libraries are loaded and relocated once).
 *
 * The child never holds the supervisor's socket. It writes its frames to a socketpair of its own; the warm
 * process relays each as a 'C' frame and, once the child has exited, sends an 'E' frame with its wait
 * status. Whatever a compromised child writes stays inside its own job's frames, and the supervisor checks
 * those (jobproc.c).
 *
 * The memory cap is RLIMIT_AS, set once here and inherited. When an allocation fails under it, libav
 * reports ENOMEM, which in a job means "this job needs more than MW_JOB_MEMORY_MB": it fails with
 * JOB_MEMORY (permanent). The CPU cap is RLIMIT_CPU of the child, which starts at zero CPU time: passing it
 * raises SIGXCPU, and the supervisor reports "cpu limit".
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libavutil/error.h>
#include <libavutil/macros.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/input.h"
#include "mediaworker/jobproc.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/sandbox.h"

#define PROGRESS_INTERVAL_US 250000
/* Room a job gets at least, above what the process maps before its first job. */
#define MIN_HEADROOM_MB 16
/* Who job processes run as when the worker is root and MW_JOB_USER is not set: "nobody" on Debian. */
#define DEFAULT_JOB_UID 65534

#if defined(__SANITIZE_ADDRESS__)
#define MW_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MW_ADDRESS_SANITIZER 1
#endif
#endif

struct warm {
    struct mw_config cfg;
    int fd;                       /* the socket to the supervisor */
    pid_t pid;
    int drop_user;                /* children switch to uid/gid */
    uid_t uid;
    gid_t gid;
};

/* State of the child while its job runs. */
struct child {
    const struct mw_config *cfg;
    int fd;                       /* the child's own socket to the warm process */
    const char *nonce;
    int64_t last_progress;
    int proc_status_fd;
};

static void set_limit(int resource, rlim_t soft, rlim_t hard, const char *name)
{
    struct rlimit limit = {soft, hard};

    if (setrlimit(resource, &limit) < 0)
        mw_log(MW_LOG_WARN, "jobproc", "cannot set %s: %s", name, strerror(errno));
}

#ifndef MW_ADDRESS_SANITIZER
/* Reads a whole /proc file through a descriptor opened before the sandbox; "" when unavailable. */
static void read_proc(int fd, char *buf, size_t size)
{
    ssize_t got = fd >= 0 ? pread(fd, buf, size - 1, 0) : -1;

    buf[got > 0 ? got : 0] = '\0';
}

/* Address space mapped now (the binary and its libraries), in bytes; 0 when unknown. */
static uint64_t mapped_bytes(void)
{
    char text[128];
    unsigned long long pages = 0;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

    read_proc(fd, text, sizeof(text));
    if (fd >= 0)
        close(fd);
    if (sscanf(text, "%llu", &pages) != 1)
        pages = 0;
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}
#endif

/* Returns 0, or -1 when the memory cap leaves no room to work (logged): a configuration error. */
static int apply_limits(const struct mw_config *cfg)
{
    rlim_t file_size = (rlim_t)cfg->job_file_size_mb << 20;

#ifdef MW_ADDRESS_SANITIZER
    /* ASan reserves terabytes of address space for its shadow memory; an RLIMIT_AS would stop it cold. */
    mw_log(MW_LOG_WARN, "jobproc", "memory cap (MW_JOB_MEMORY_MB) not applied under AddressSanitizer");
#else
    rlim_t memory = (rlim_t)cfg->job_memory_mb << 20;
    uint64_t mapped = mapped_bytes();

    /* Below what the libraries alone map, every job would fail as "memory limit": refuse to start. */
    if (mapped + ((uint64_t)MIN_HEADROOM_MB << 20) > memory) {
        mw_log(MW_LOG_ERROR, "jobproc", "MW_JOB_MEMORY_MB=%d is too low: a job process maps %llu MB before any "
               "job; give it at least %llu", cfg->job_memory_mb, (unsigned long long)(mapped >> 20),
               (unsigned long long)(mapped >> 20) + MIN_HEADROOM_MB);
        return -1;
    }
    set_limit(RLIMIT_AS, memory, memory, "RLIMIT_AS");
#endif
    set_limit(RLIMIT_FSIZE, file_size, file_size, "RLIMIT_FSIZE");
    /* Over the file-size cap a write then fails with EFBIG (a clean job failure) instead of SIGXFSZ. */
    signal(SIGXFSZ, SIG_IGN);
    return 0;
}

/*
 * Which user the children run as: MW_JOB_USER, or by default an unprivileged uid when the worker is root
 * (as in most containers), so the confinement does not depend on an operator remembering a setting.
 * Whether the switch really works (a container without CAP_SETUID cannot) is tried once in a throwaway
 * child; the answer travels to the supervisor in the ready frame.
 */
static int choose_identity(struct warm *w, char *identity, size_t size)
{
    pid_t pid;
    int status = 0;

    if (w->cfg.job_user[0]) {
        const struct passwd *user = getpwnam(w->cfg.job_user);
        if (!user) {
            mw_log(MW_LOG_ERROR, "jobproc", "MW_JOB_USER: no user \"%s\"", w->cfg.job_user);
            return -1;
        }
        w->uid = user->pw_uid;
        w->gid = user->pw_gid;
    } else {
        w->uid = DEFAULT_JOB_UID;
        w->gid = DEFAULT_JOB_UID;
    }
    if (geteuid() != 0) {
        snprintf(identity, size, "uid %d (the worker's own; not root, so nothing to drop)", (int)geteuid());
        return 0;
    }
    pid = fork();
    if (pid == 0)
        _exit(setgroups(0, NULL) == 0 && setgid(w->gid) == 0 && setuid(w->uid) == 0 && getuid() == w->uid ? 0 : 1);
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(identity, size, "root: cannot switch to uid %d (no CAP_SETUID?)", (int)w->uid);
        return 0;
    }
    w->drop_user = 1;
    snprintf(identity, size, "uid %d", (int)w->uid);
    return 0;
}

/*
 * Looking for a GPU costs a job ~30 ms (dlopen attempts of every driver), too much to repeat per job on a CPU
 * node, and a CUDA context must not be created before a fork. So a throwaway child looks once; when it finds
 * no device, this process makes the same (software) choice itself, and every job's child inherits it.
 * When a device exists, each job's child opens it, as only it may.
 */
static void settle_hwaccel(const struct mw_config *cfg)
{
    struct mw_hwaccel_choice choice;
    AVBufferRef *device = NULL;
    int status = 0;
    pid_t pid;

    if (cfg->hwaccel == MW_HWACCEL_NONE)
        return;
    pid = fork();
    if (pid == 0)
        _exit(mw_hwaccel_open(cfg, &device, &choice) == 0 && choice.device_type != AV_HWDEVICE_TYPE_NONE ? 0 : 1);
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 1 &&
        mw_hwaccel_shared(cfg, &device, &choice) == 0)
        av_buffer_unref(&device);
}

static void send_progress(void *opaque, const struct mw_progress *progress)
{
    struct child *c = opaque;
    int64_t now = av_gettime_relative();
    char text[512];
    int len;

    if (now - c->last_progress < PROGRESS_INTERVAL_US)
        return;
    c->last_progress = now;
    len = snprintf(text, sizeof(text),
                   "{\"nonce\":\"%s\",\"progress\":{\"phase\":\"%.64s\",\"done\":%lld,\"total\":%lld,"
                   "\"percent\":%.2f,\"speed\":%.3f,\"eta_s\":%.1f}}",
                   c->nonce, progress->phase ? progress->phase : "", (long long)progress->done,
                   (long long)progress->total, progress->percent, progress->speed, progress->eta_s);
    if (len > 0 && (size_t)len < sizeof(text) && !strpbrk(progress->phase ? progress->phase : "", "\"\\"))
        mw_jobproc_frame_write(c->fd, text, (size_t)len);
}

/*
 * Decoders often turn a refused allocation into "no frame" or "invalid data" rather than ENOMEM, so the
 * job's own error can hide the cap. The peak address space says it: a process that came within 1/16 of
 * RLIMIT_AS reached the cap.
 */
static int reached_memory_cap(const struct child *c)
{
#ifdef MW_ADDRESS_SANITIZER
    (void)c;
    return 0;
#else
    uint64_t cap = (uint64_t)c->cfg->job_memory_mb << 20;
    unsigned long long peak_kb = 0;
    const char *line;
    char text[4096];

    read_proc(c->proc_status_fd, text, sizeof(text));
    line = strstr(text, "VmPeak:");
    if (!line || sscanf(line, "VmPeak: %llu kB", &peak_kb) != 1)
        return 0;
    return (uint64_t)peak_kb * 1024 >= cap - cap / 16;
#endif
}

/* Rewrites the report's error for a job that ran out of memory under the cap. */
static void mark_memory_limit(const struct mw_config *cfg, cJSON *result)
{
    cJSON *error = cJSON_CreateObject();
    char message[160];

    snprintf(message, sizeof(message), "memory limit: the job needed more than MW_JOB_MEMORY_MB=%d",
             cfg->job_memory_mb);
    if (!error || !cJSON_AddStringToObject(error, "code", mw_error_code_name(MW_ERR_JOB_MEMORY)) ||
        !cJSON_AddStringToObject(error, "message", message) || !cJSON_AddBoolToObject(error, "permanent", 1) ||
        !cJSON_ReplaceItemInObjectCaseSensitive(result, "error", error))
        cJSON_Delete(error);
}

static int answer(struct child *c, const char *job_id, int ret, cJSON *result)
{
    cJSON *response = cJSON_CreateObject();
    char *text = NULL;
    char fallback[160];
    int written;

    if (response && cJSON_AddStringToObject(response, "nonce", c->nonce) &&
        cJSON_AddStringToObject(response, "job_id", job_id) && cJSON_AddNumberToObject(response, "ret", ret) &&
        (!result || cJSON_AddItemReferenceToObject(response, "result", result)))
        text = cJSON_PrintUnformatted(response);
    cJSON_Delete(response);
    if (text) {
        written = mw_jobproc_frame_write(c->fd, text, strlen(text));
        cJSON_free(text);
        return written;
    }
    /* Out of memory even for the answer: the code alone still tells the supervisor what happened. */
    snprintf(fallback, sizeof(fallback), "{\"nonce\":\"%s\",\"job_id\":\"%s\",\"ret\":%d}", c->nonce, job_id,
             ret == 0 ? AVERROR(ENOMEM) : ret);
    return mw_jobproc_frame_write(c->fd, fallback, strlen(fallback));
}

/* Adds path to list (a policy's NULL-terminated array) if it exists and there is room. */
static void allow_path(const char **list, const char *path)
{
    int count = 0;

    while (count < MW_SANDBOX_MAX_PATHS - 1 && list[count])
        count++;
    if (count < MW_SANDBOX_MAX_PATHS - 1 && access(path, F_OK) == 0)
        list[count] = path;
}

/* The device nodes of a GPU that was found: NVIDIA's control and unit nodes, and the DRM render nodes. */
static void allow_gpu_nodes(struct mw_sandbox_policy *policy, char names[][64], int max)
{
    DIR *dev = opendir("/dev");
    struct dirent *entry;
    int count = 0;

    allow_path(policy->read_write, "/dev/dri");
    while (dev && count < max && (entry = readdir(dev))) {
        if (strncmp(entry->d_name, "nvidia", 6))
            continue;
        snprintf(names[count], sizeof(names[count]), "/dev/%.50s", entry->d_name);
        allow_path(policy->read_write, names[count++]);
    }
    if (dev)
        closedir(dev);
}

/*
 * Prepares the job's own files with the rights the child still has, then confines it to them. What stays
 * reachable: the system's libraries (read-only; hardware drivers load late), /dev/null and /dev/urandom, the
 * job's output folder (read-write; only when it writes outputs) and, on a node where a GPU was found, its
 * device nodes. The input is an open descriptor; nothing under the input root or the scratch folder is.
 */
static int confine(const struct warm *w, struct mw_job *job, char *output_dir, size_t output_size)
{
    struct mw_sandbox_policy policy = {.uid = w->uid, .gid = w->gid, .run_as_user = w->drop_user};
    struct mw_sandbox_status status;
    struct mw_hwaccel_choice choice;
    AVBufferRef *device = NULL;
    char gpu_nodes[8][64];
    char input_path[4096];
    char detail[256];
    int ret;

    /* A failure here is the job's to report: mw_job_run locates the input again and says why. */
    if (mw_job_locate_input(&w->cfg, job, input_path, sizeof(input_path), detail, sizeof(detail)) == 0)
        job->input_fd = open(input_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    /* Opened before the sandbox, while the driver may still read what it needs; shared by the job. */
    if (mw_hwaccel_shared(&w->cfg, &device, &choice) < 0)
        return AVERROR(ENOMEM);
    av_buffer_unref(&device);
    output_dir[0] = '\0';
    if (mw_job_writes_outputs(job) && mw_job_output_path(&w->cfg, job, output_dir, output_size) == 0 &&
        mw_path_mkdirs(output_dir) == 0 && (!w->drop_user || chown(output_dir, w->uid, w->gid) == 0))
        allow_path(policy.read_write, output_dir);
    allow_path(policy.read_only, "/usr");
    allow_path(policy.read_only, "/etc/ld.so.cache");
    allow_path(policy.read_only, "/dev/urandom");
    allow_path(policy.read_write, "/dev/null");
    if (choice.device_type != AV_HWDEVICE_TYPE_NONE)
        allow_gpu_nodes(&policy, gpu_nodes, 8);
    ret = mw_sandbox_apply(&policy, &status);
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "jobproc", "cannot enter the sandbox: %s", mw_err2str(ret));
        return ret;
    }
    mw_log(MW_LOG_DEBUG, "jobproc", "sandboxed: seccomp %d, landlock abi %d, user dropped %d", status.seccomp,
           status.landlock_abi, status.user_dropped);
    return 0;
}

/* The child's whole life: prepare, confine, run, answer. Returns its exit status. */
static int run_child(const struct warm *w, const cJSON *request, int fd)
{
    const char *body = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(request, "body"));
    const char *message_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(request, "message_id"));
    const char *request_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(request, "request_id"));
    const char *local_input = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(request, "local_input"));
    struct child c = {.cfg = &w->cfg, .fd = fd,
                      .nonce = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(request, "nonce"))};
    struct mw_job *job = NULL;
    cJSON *result = NULL;
    char output_dir[2048];
    char err[256] = "";
    int ret;

    c.proc_status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ret = mw_job_parse(body, strlen(body), message_id[0] ? message_id : NULL, request_id, &w->cfg, &job, NULL, err,
                       sizeof(err));
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "jobproc", "job message refused: %s", err);
        ret = answer(&c, "", ret, NULL) < 0 ? 1 : 0;
        goto end;
    }
    /* The supervisor downloaded a URL input; the job process itself never touches the network. */
    snprintf(job->local_input, sizeof(job->local_input), "%s", local_input);
    mw_log_context_set(job->job_id, job->request_id);
    if ((ret = confine(w, job, output_dir, sizeof(output_dir))) < 0) {
        ret = answer(&c, job->job_id, MW_ERR_JOB_LOST, NULL) < 0 ? 1 : 0;
        goto end;
    }
    set_limit(RLIMIT_CPU, (rlim_t)w->cfg.job_cpu_s, RLIM_INFINITY, "RLIMIT_CPU");
    ret = mw_job_run(&w->cfg, job, send_progress, &c, &result);
    if (ret == AVERROR(ENOMEM) || (ret < 0 && reached_memory_cap(&c))) {
        ret = MW_ERR_JOB_MEMORY;
        if (result)
            mark_memory_limit(&w->cfg, result);
    }
    ret = answer(&c, job->job_id, ret, result) < 0 ? 1 : 0;
end:
    mw_log_context_set(NULL, NULL);
    if (job && job->input_fd >= 0)
        close(job->input_fd);
    if (c.proc_status_fd >= 0)
        close(c.proc_status_fd);
    cJSON_Delete(result);
    mw_job_free(&job);
    return ret;
}

/* Below the M_MMAP_THRESHOLD the warm process sets, so that malloc takes it from the heap. */
#define HUGE_PAGE_HEAP_BYTES ((size_t)30 << 20)
#define HUGE_PAGE_BYTES ((uintptr_t)2 << 20)

/*
 * A forked child owns none of its heap pages: each 4 KiB page a job touches first is a page fault, and a
 * decoder touches many (libavcodec zeroes every frame of its pools; a 1080p frame is 3 MiB). On a virtual
 * machine a fault costs ~10 us, so a probe of a 1080p upload spent more time in faults than decoding. The
 * child therefore grows its heap once and asks for transparent huge pages there: one fault per 2 MiB.
 * Until touched the growth is only address space, and it stays in the heap for the job's allocations
 * (M_TRIM_THRESHOLD). Where the kernel has huge pages off, madvise fails and nothing else changes.
 */
static void reserve_huge_page_heap(void)
{
    void *block = malloc(HUGE_PAGE_HEAP_BYTES);
    uintptr_t start, end;

    if (!block)
        return;
    start = ((uintptr_t)block + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1);
    end = ((uintptr_t)block + HUGE_PAGE_HEAP_BYTES) & ~(HUGE_PAGE_BYTES - 1);
    madvise((void *)start, end - start, MADV_HUGEPAGE);
    free(block);
}

/* cJSON's free here: parsed requests hold users' data, and freed heap is what the next job's child inherits. */
static void wiping_free(void *block)
{
    if (!block)
        return;
    explicit_bzero(block, malloc_usable_size(block));
    free(block);
}

static void wipe_and_free(char **data, size_t size)
{
    if (*data)
        explicit_bzero(*data, size);
    av_freep(data);
}

/* How long a child whose socket closed may take to become reapable before it is killed. */
#define CHILD_EXIT_GRACE_US (2 * 1000 * 1000)

/*
 * Reaps the child once its socket closed: it exited, was killed, or a broken frame made us stop listening.
 * A dying process closes its files before it can be waited for, so a SIGKILL from outside (the OOM killer, an
 * operator) is seen here a moment before the child is a zombie: it gets grace_us to get there. Only a child
 * still running after that is killed here. Returns whether the kill was ours; the supervisor retries only a
 * SIGKILL nobody here sent.
 */
static int reap_child(pid_t pid, int *status, int64_t grace_us)
{
    int64_t give_up = av_gettime_relative() + grace_us;
    unsigned nap_us = 100;

    for (;;) {
        pid_t reaped = waitpid(pid, status, WNOHANG);
        if (reaped == pid)
            return 0;
        if (reaped < 0 && errno != EINTR)
            break;
        if (av_gettime_relative() >= give_up)
            break;
        av_usleep(nap_us);
        nap_us = FFMIN(nap_us * 2, 20000u);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        continue;
    return 1;
}

/*
 * One job: fork the child, relay its frames, reap it, say how it ended. Returns 0, or a negative error when
 * the supervisor's socket is gone (the warm process then exits).
 */
static int serve_job(struct warm *w, const char *text, size_t size)
{
    cJSON *request = cJSON_ParseWithLengthOpts(text, size, NULL, 0);
    const char *nonce = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(request, "nonce"));
    char end[160];
    int pair[2];
    int status = 0;
    int killed = 0;
    int ret = 0;
    pid_t pid;

    if (!nonce || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(request, "body")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(request, "message_id")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(request, "request_id")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(request, "local_input"))) {
        cJSON_Delete(request);
        return AVERROR_INVALIDDATA;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
        ret = AVERROR(errno);
        cJSON_Delete(request);
        return ret;
    }
    pid = fork();
    if (pid == 0) {
        /* Gone with the warm process (the supervisor kills it at the deadline); it must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != w->pid)
            _exit(1);
        close(w->fd);
        close(pair[0]);
        prctl(PR_SET_NAME, "mw-job-run", 0, 0, 0);
        reserve_huge_page_heap();
        int child_status = run_child(w, request, pair[1]);
        /* The kernel takes back a finished job's memory at once. exit() would first run the destructors of
         * every library libav links (over a hundred), each write a copy-on-write fault in a forked process:
         * it cost more than a probe. Sanitizer builds exit() for their leak check. */
        if (MW_LEAK_SCAN_AT_EXIT)
            exit(child_status);
        fflush(NULL);
        _exit(child_status);
    }
    close(pair[1]);
    if (pid < 0) {
        status = W_EXITCODE(126, 0);
        close(pair[0]);
    } else {
        for (;;) {
            char *frame = NULL;
            size_t frame_size;
            if (mw_jobproc_frame_read(pair[0], &frame, &frame_size, 0) < 0)
                break;
            ret = mw_jobproc_frame_write_typed(w->fd, MW_JOBPROC_CHILD_FRAME, frame, frame_size);
            wipe_and_free(&frame, frame_size);
            if (ret < 0)
                break;
        }
        close(pair[0]);
        killed = reap_child(pid, &status, ret < 0 ? 0 : CHILD_EXIT_GRACE_US);
    }
    snprintf(end, sizeof(end), "{\"nonce\":\"%.64s\",\"status\":%d,\"killed\":%s}", nonce, status,
             killed ? "true" : "false");
    cJSON_Delete(request);
    if (ret < 0)
        return ret;
    return mw_jobproc_frame_write_typed(w->fd, MW_JOBPROC_END_FRAME, end, strlen(end));
}

int mw_jobproc_child_main(int fd)
{
    struct warm *w = av_mallocz(sizeof(*w));
    char identity[160] = "";
    char ready[256];
    char *text = NULL;
    size_t size = 0;
    int status = 0;

    if (!w)
        return 1;
    w->fd = fd;
    w->pid = getpid();
    if (mw_jobproc_frame_read(fd, &text, &size, 0) < 0 || size != sizeof(w->cfg)) {
        fprintf(stderr, "mediaworker job-process: no configuration from the supervisor (run by `serve` only)\n");
        status = 2;
        goto end;
    }
    memcpy(&w->cfg, text, sizeof(w->cfg));
    av_freep(&text);
    mw_log_setup(w->cfg.log_level, w->cfg.log_format, stderr);
    cJSON_InitHooks(&(cJSON_Hooks){.malloc_fn = malloc, .free_fn = wiping_free});
    /* exec'd as /proc/self/exe, the process would be called "exe" in ps and top. */
    prctl(PR_SET_NAME, "mw-job", 0, 0, 0);
    /* A job allocates and frees the same large buffers many times (frame pools, packet queues); keeping freed
     * memory in the heap instead of handing it back saves the page faults of getting it again. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    mw_log_route_libav();
    settle_hwaccel(&w->cfg);
    mw_input_prewarm_decoders();
    /* Compiled here once, inherited by every job's child. */
    if (apply_limits(&w->cfg) < 0 || mw_sandbox_prepare() < 0 || choose_identity(w, identity, sizeof(identity)) < 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || mw_path_mkdirs(w->cfg.output_root) < 0) {
        status = 3;
        goto end;
    }
    snprintf(ready, sizeof(ready), "{\"ready\":true,\"job_identity\":\"%s\",\"dropped\":%s}", identity,
             w->drop_user ? "true" : "false");
    if (mw_jobproc_frame_write_typed(fd, MW_JOBPROC_READY_FRAME, ready, strlen(ready)) < 0) {
        status = 1;
        goto end;
    }
    for (;;) {
        int ret = mw_jobproc_frame_read(fd, &text, &size, 0);
        if (ret == AVERROR_EOF)
            break;
        if (ret < 0) {
            status = 1;
            break;
        }
        ret = serve_job(w, text, size);
        wipe_and_free(&text, size);
        if (ret < 0) {
            status = 1;
            break;
        }
    }
end:
    av_free(text);
    av_free(w);
    return status;
}
