/*
 * The job-process side: receive the configuration, apply the limits, then run jobs one at a time until
 * the supervisor closes the socket.
 *
 * The memory cap is RLIMIT_AS. When an allocation fails under it, libav reports ENOMEM, which in a job
 * process means "this job needs more than MW_JOB_MEMORY_MB": the job fails with JOB_MEMORY (permanent) and
 * the process asks to be replaced, since code that ran out of memory half-way is not trusted further.
 * The CPU cap is per job: before each job the soft RLIMIT_CPU is moved to the CPU time used so far plus
 * MW_JOB_CPU_SECONDS (the hard limit stays unlimited so it can be moved again); passing it raises SIGXCPU,
 * which kills the process and the supervisor reports "cpu limit".
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/error.h"
#include "mediaworker/hwaccel.h"
#include "mediaworker/jobproc.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "mediaworker/sandbox.h"

#define PROGRESS_INTERVAL_US 250000
/* Room a job gets at least, above what the process maps before its first job. */
#define MIN_HEADROOM_MB 16

#if defined(__SANITIZE_ADDRESS__)
#define MW_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MW_ADDRESS_SANITIZER 1
#endif
#endif

struct child {
    struct mw_config cfg;
    int fd;
    int64_t last_progress;
};

static void set_limit(int resource, rlim_t soft, rlim_t hard, const char *name)
{
    struct rlimit limit = {soft, hard};

    if (setrlimit(resource, &limit) < 0)
        mw_log(MW_LOG_WARN, "jobproc", "cannot set %s: %s", name, strerror(errno));
}

/*
 * The process's own /proc files are opened once, before the sandbox: Landlock cannot keep a rule on
 * /proc/<pid> (procfs may drop and recreate those inodes), so they are read through descriptors held open.
 */
static int proc_status_fd = -1, proc_statm_fd = -1;

static void open_proc_files(void)
{
    proc_status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    proc_statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
}

/* Reads a whole /proc file through its kept descriptor; "" when unavailable. */
static void read_proc(int fd, char *buf, size_t size)
{
    ssize_t got = fd >= 0 ? pread(fd, buf, size - 1, 0) : -1;

    buf[got > 0 ? got : 0] = '\0';
}

/* Resident memory now, in bytes; 0 when unknown. */
static uint64_t resident_bytes(void)
{
    char text[128];
    unsigned long long size = 0, resident = 0;

    read_proc(proc_statm_fd, text, sizeof(text));
    if (sscanf(text, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

#ifndef MW_ADDRESS_SANITIZER
/* Address space mapped now (the binary and its libraries), in bytes; 0 when unknown. */
static uint64_t mapped_bytes(void)
{
    char text[128];
    unsigned long long pages = 0;

    read_proc(proc_statm_fd, text, sizeof(text));
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
 * Confines this process before it reads any upload (see sandbox.h). What it may still read: the uploads,
 * the system's libraries and loader cache (hardware drivers are loaded late); what
 * it may write: outputs and scratch space; on GPU nodes, the device nodes. The hardware device is opened
 * first, while the driver may still do whatever it needs to start.
 */
static int enter_sandbox(const struct mw_config *cfg)
{
    static const char *const system_paths[] = {"/usr", "/etc/ld.so.cache", NULL};
    struct mw_sandbox_policy policy = {0};
    struct mw_sandbox_status status;
    struct mw_hwaccel_choice choice;
    AVBufferRef *device = NULL;
    int read_only = 0, read_write = 0;
    int ret;

    if (mw_hwaccel_shared(cfg, &device, &choice) < 0)
        return -1;
    av_buffer_unref(&device);
    if ((ret = mw_path_mkdirs(cfg->output_root)) < 0 || (ret = mw_path_mkdirs(cfg->scratch_dir)) < 0) {
        mw_log(MW_LOG_ERROR, "jobproc", "cannot create the output or scratch directory: %s", mw_err2str(ret));
        return -1;
    }
    policy.read_only[read_only++] = cfg->input_root;
    for (const char *const *path = system_paths; *path; path++)
        if (access(*path, F_OK) == 0)
            policy.read_only[read_only++] = *path;
    policy.read_write[read_write++] = cfg->output_root;
    policy.read_write[read_write++] = cfg->scratch_dir;
    if (cfg->hwaccel != MW_HWACCEL_NONE)
        policy.read_write[read_write++] = "/dev";
    if (cfg->job_user[0]) {
        const struct passwd *user = getpwnam(cfg->job_user);
        if (!user) {
            mw_log(MW_LOG_ERROR, "jobproc", "MW_JOB_USER: no user \"%s\"", cfg->job_user);
            return -1;
        }
        policy.uid = user->pw_uid;
        policy.gid = user->pw_gid;
        policy.run_as_user = 1;
    }
    ret = mw_sandbox_apply(&policy, &status);
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "jobproc", "cannot enter the sandbox: %s", mw_err2str(ret));
        return -1;
    }
    mw_log(MW_LOG_DEBUG, "jobproc", "sandboxed: seccomp %d, landlock abi %d, user dropped %d", status.seccomp,
           status.landlock_abi, status.user_dropped);
    return 0;
}

static void arm_cpu_limit(const struct mw_config *cfg)
{
    struct rusage usage;
    rlim_t used = 0;

    if (getrusage(RUSAGE_SELF, &usage) == 0)
        used = (rlim_t)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + 1);
    set_limit(RLIMIT_CPU, used + (rlim_t)cfg->job_cpu_s, RLIM_INFINITY, "RLIMIT_CPU");
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
                   "{\"progress\":{\"phase\":\"%.64s\",\"done\":%lld,\"total\":%lld,\"percent\":%.2f,"
                   "\"speed\":%.3f,\"eta_s\":%.1f}}",
                   progress->phase ? progress->phase : "", (long long)progress->done, (long long)progress->total,
                   progress->percent, progress->speed, progress->eta_s);
    if (len > 0 && (size_t)len < sizeof(text) && !strchr(progress->phase ? progress->phase : "", '"'))
        mw_jobproc_frame_write(c->fd, text, (size_t)len);
}

/*
 * Decoders often turn a refused allocation into "no frame" or "invalid data" rather than ENOMEM, so the
 * job's own error can hide the cap. The peak address space says it: a process that came within 1/16 of
 * RLIMIT_AS reached the cap.
 */
static int reached_memory_cap(const struct mw_config *cfg)
{
#ifdef MW_ADDRESS_SANITIZER
    (void)cfg;
    return 0;
#else
    uint64_t cap = (uint64_t)cfg->job_memory_mb << 20;
    unsigned long long peak_kb = 0;
    const char *line;
    char text[4096];

    read_proc(proc_status_fd, text, sizeof(text));
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

static int answer(struct child *c, int ret, cJSON *result, int retire)
{
    cJSON *response = cJSON_CreateObject();
    char *text = NULL;
    char fallback[96];
    int written;

    if (response && cJSON_AddNumberToObject(response, "ret", ret) && cJSON_AddBoolToObject(response, "retire", retire)
        && (!result || cJSON_AddItemReferenceToObject(response, "result", result)))
        text = cJSON_PrintUnformatted(response);
    cJSON_Delete(response);
    if (text) {
        written = mw_jobproc_frame_write(c->fd, text, strlen(text));
        cJSON_free(text);
        return written;
    }
    /* Out of memory even for the answer: the code alone still tells the supervisor what happened. */
    snprintf(fallback, sizeof(fallback), "{\"ret\":%d,\"retire\":true}", ret == 0 ? AVERROR(ENOMEM) : ret);
    return mw_jobproc_frame_write(c->fd, fallback, strlen(fallback));
}

static int serve_one(struct child *c, const char *text, size_t size, int *retire)
{
    cJSON *request = cJSON_ParseWithLengthOpts(text, size, NULL, 0);
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(request, "body");
    const cJSON *message_id = cJSON_GetObjectItemCaseSensitive(request, "message_id");
    const cJSON *request_id = cJSON_GetObjectItemCaseSensitive(request, "request_id");
    const cJSON *local_input = cJSON_GetObjectItemCaseSensitive(request, "local_input");
    struct mw_job *job = NULL;
    cJSON *result = NULL;
    char err[256] = "";
    int near_cap;
    int ret;

    if (!cJSON_IsString(body) || !cJSON_IsString(message_id) || !cJSON_IsString(request_id) ||
        !cJSON_IsString(local_input)) {
        ret = AVERROR_INVALIDDATA;
        goto end;
    }
    ret = mw_job_parse(body->valuestring, strlen(body->valuestring),
                       message_id->valuestring[0] ? message_id->valuestring : NULL, request_id->valuestring,
                       &c->cfg, &job, NULL, err, sizeof(err));
    if (ret < 0) {
        mw_log(MW_LOG_ERROR, "jobproc", "job message refused: %s", err);
        goto end;
    }
    /* The supervisor downloaded a URL input; the job process itself never touches the network. */
    snprintf(job->local_input, sizeof(job->local_input), "%s", local_input->valuestring);
    mw_log_context_set(job->job_id, job->request_id);
    arm_cpu_limit(&c->cfg);
    c->last_progress = 0;
    ret = mw_job_run(&c->cfg, job, send_progress, c, &result);
    /* VmPeak never goes down: a process that once came near the cap, even in a job that succeeded, would
     * have every later failure read as the cap. So it is replaced after any job that reached it. */
    near_cap = reached_memory_cap(&c->cfg);
    if (ret == AVERROR(ENOMEM) || (ret < 0 && near_cap)) {
        ret = MW_ERR_JOB_MEMORY;
        if (result)
            mark_memory_limit(&c->cfg, result);
    }
    if (ret == MW_ERR_JOB_MEMORY || near_cap)
        *retire = 1;
    /* Recycled above half the cap: what grew over many jobs (fragmentation, caches) is given back. */
    if (resident_bytes() > ((uint64_t)c->cfg.job_memory_mb << 20) / 2) {
        mw_log(MW_LOG_INFO, "jobproc", "resident memory above half of MW_JOB_MEMORY_MB; asking to be replaced");
        *retire = 1;
    }
end:
    ret = answer(c, ret, result, *retire) < 0 ? AVERROR(EPIPE) : 0;
    mw_log_context_set(NULL, NULL);
    cJSON_Delete(result);
    mw_job_free(&job);
    cJSON_Delete(request);
    return ret;
}

int mw_jobproc_child_main(int fd)
{
    struct child *c = av_mallocz(sizeof(*c));
    char *text = NULL;
    size_t size = 0;
    int retire = 0;
    int status = 0;

    if (!c)
        return 1;
    c->fd = fd;
    if (mw_jobproc_frame_read(fd, &text, &size, 0) < 0 || size != sizeof(c->cfg)) {
        fprintf(stderr, "mediaworker job-process: no configuration from the supervisor (run by `serve` only)\n");
        status = 2;
        goto end;
    }
    memcpy(&c->cfg, text, sizeof(c->cfg));
    av_freep(&text);
    mw_log_setup(c->cfg.log_level, c->cfg.log_format, stderr);
    /* exec'd as /proc/self/exe, the process would be called "exe" in ps and top. */
    prctl(PR_SET_NAME, "mw-job", 0, 0, 0);
    /* Every job allocates and frees the same large buffers (demuxer and decoder contexts, frame pools);
     * keeping freed memory in the heap instead of handing it back to the kernel saves the next job the
     * page faults of getting it again. RLIMIT_AS still bounds the total. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    mw_log_route_libav();
    open_proc_files();
    if (apply_limits(&c->cfg) < 0) {
        status = 3;
        goto end;
    }
    if (enter_sandbox(&c->cfg) < 0) {
        status = 3;
        goto end;
    }
    /* Tells the supervisor that this process is set up and will take jobs. */
    if (mw_jobproc_frame_write(fd, "{\"ready\":true}", 14) < 0) {
        status = 1;
        goto end;
    }
    while (!retire) {
        int ret = mw_jobproc_frame_read(fd, &text, &size, 0);
        if (ret == AVERROR_EOF)
            break;
        if (ret < 0) {
            status = 1;
            break;
        }
        ret = serve_one(c, text, size, &retire);
        av_freep(&text);
        if (ret < 0) {
            status = 1;
            break;
        }
    }
end:
    av_free(text);
    av_free(c);
    return status;
}
