/*
 * The job's output folder <output_root>/<user_id>/<job_id>: who may write it, when its work is finished,
 * and what happens to it when the work is not.
 *
 * The folder's marker (.mw-job) holds the digest of the message that made it and is also its lock: every
 * job process working in the folder holds a shared flock on it from the claim to the end of the job, and
 * whoever removes outputs takes it exclusively without waiting. So a cleanup never removes files another
 * attempt of the same message is writing (a producer that published a message twice), and a commit never
 * lists files a cleanup is removing.
 *
 * The result manifest (.mw-result.json) is the commit point: written atomically after every output of a
 * successful job was written and checked, it holds the message's digest and the job's report. A retry or
 * redelivery that finds it, with every output it lists still in place at its size, reports it again
 * instead of running the job; a folder without one holds no finished work and is removed as a whole.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>

#include "mediaworker/error.h"
#include "mediaworker/json.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "operation_internal.h"

#define MANIFEST_VERSION 1
/* A report lists at most a few hundred outputs (HLS playlists, storyboard sheets): far below this. */
#define MANIFEST_MAX_BYTES ((off_t)4 << 20)
/* hls/<rendition>/<segment> and the temporaries of interrupted writes are the deepest entries. */
#define FOLDER_DEPTH 4

/* Reads the digest held by an open marker; 0 or a negative error. */
static int read_marker(int fd, char digest[MW_JOB_DIGEST_SIZE])
{
    ssize_t got = pread(fd, digest, MW_JOB_DIGEST_SIZE - 1, 0);

    if (got < 0)
        return AVERROR(errno);
    digest[got] = '\0';
    return 0;
}

/* True when fd is still the file linked at path: a cleanup may have removed the marker we waited for. */
static int still_linked(int fd, const char *path)
{
    struct stat held, named;

    return fstat(fd, &held) == 0 && lstat(path, &named) == 0 && held.st_ino == named.st_ino &&
           held.st_dev == named.st_dev;
}

/* Creates the marker with our digest, or opens the one there; locked shared either way. */
static int open_marker(const char *marker, const char *digest, int *pfd)
{
    int fd = open(marker, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    size_t len = strlen(digest);

    if (fd >= 0) {
        /* Exclusive while the digest is written, so that nobody reads it half-written. */
        if (flock(fd, LOCK_EX) < 0 || write(fd, digest, len) != (ssize_t)len || flock(fd, LOCK_SH) < 0) {
            int ret = AVERROR(errno ? errno : EIO);
            unlink(marker);
            close(fd);
            return ret;
        }
        *pfd = fd;
        return 0;
    }
    if (errno != EEXIST)
        return AVERROR(errno);
    fd = open(marker, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return AVERROR(errno);
    if (flock(fd, LOCK_SH) < 0) {
        int ret = AVERROR(errno);
        close(fd);
        return ret;
    }
    *pfd = fd;
    return 0;
}

static int claim(struct mw_job_context *ctx)
{
    char marker[4096];
    char found[MW_JOB_DIGEST_SIZE];
    int fd = -1;
    int ret = 0;

    if (snprintf(marker, sizeof(marker), "%s/" MW_JOB_MARKER, ctx->output_dir) >= (int)sizeof(marker))
        return AVERROR(ENAMETOOLONG);
    /* A cleanup that removed the marker while we waited for its lock leaves us holding a dead file. */
    for (int tries = 0; tries < 3; tries++) {
        if ((ret = mw_path_mkdirs(ctx->output_dir)) < 0 || (ret = open_marker(marker, ctx->job->digest, &fd)) < 0)
            return ret;
        if (still_linked(fd, marker))
            break;
        close(fd);
        fd = -1;
        ret = AVERROR(EAGAIN);
    }
    if (fd < 0)
        return ret;
    if ((ret = read_marker(fd, found)) < 0) {
        close(fd);
        return ret;
    }
    if (strcmp(found, ctx->job->digest)) {
        close(fd);
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "job %s of user %lld already holds the outputs "
                 "of a different message", ctx->job->job_id, (long long)ctx->job->user_id);
        return MW_ERR_JOB_ID_CONFLICT;
    }
    ctx->marker_fd = fd;
    return 0;
}

int mw_job_output_dir(struct mw_job_context *ctx)
{
    return ctx->marker_fd >= 0 ? 0 : claim(ctx);
}

/* "<user>/<job>/" followed by names that stay inside the folder, or 0. */
static int path_is_the_jobs(const struct mw_job *job, const char *path)
{
    char prefix[MW_JOB_ID_MAX + 32];
    char component[256];
    size_t len = (size_t)snprintf(prefix, sizeof(prefix), "%" PRId64 "/%s/", job->user_id, job->job_id);
    const char *p;

    if (strncmp(path, prefix, len))
        return 0;
    for (p = path + len; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || n >= sizeof(component))
            return 0;
        memcpy(component, p, n);
        component[n] = '\0';
        if (!mw_path_component_ok(component))
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return p > path + len;
}

/* True when every output the report lists is a regular file of its size under the output root. */
static int outputs_in_place(const struct mw_config *cfg, const struct mw_job *job, const cJSON *report)
{
    const cJSON *outputs = cJSON_GetObjectItemCaseSensitive(report, "outputs");
    const cJSON *output;

    if (!cJSON_IsArray(outputs))
        return 0;
    cJSON_ArrayForEach(output, outputs) {
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(output, "path"));
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(output, "bytes");
        char full[4096];
        struct stat st;

        if (!path || !cJSON_IsNumber(bytes) || !path_is_the_jobs(job, path) ||
            snprintf(full, sizeof(full), "%s/%s", cfg->output_root, path) >= (int)sizeof(full) ||
            lstat(full, &st) < 0 || !S_ISREG(st.st_mode) || (double)st.st_size != bytes->valuedouble)
            return 0;
    }
    return 1;
}

int mw_job_commit_result(struct mw_job_context *ctx)
{
    char path[4096];
    cJSON *manifest = cJSON_CreateObject();
    char *text = NULL;
    int ret;

    if (snprintf(path, sizeof(path), "%s/" MW_JOB_RESULT, ctx->output_dir) >= (int)sizeof(path)) {
        ret = AVERROR(ENAMETOOLONG);
        goto end;
    }
    /* What the manifest promises is checked as a reader will check it. */
    if (!outputs_in_place(ctx->cfg, ctx->job, ctx->report)) {
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "an output vanished before the result was committed");
        ret = AVERROR(EIO);
        goto end;
    }
    if (!manifest || !cJSON_AddNumberToObject(manifest, "version", MANIFEST_VERSION) ||
        !cJSON_AddStringToObject(manifest, "digest", ctx->job->digest) ||
        !cJSON_AddItemReferenceToObject(manifest, "report", ctx->report) ||
        !(text = cJSON_PrintUnformatted(manifest))) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = mw_path_write_atomic(path, text, strlen(text));
    if (ret < 0)
        snprintf(ctx->error_detail, sizeof(ctx->error_detail), "committing the result: %s", mw_err2str(ret));
end:
    cJSON_free(text);
    cJSON_Delete(manifest);
    return ret;
}

/* The report in the folder's manifest when it is this message's and everything it lists is in place. */
static cJSON *read_manifest(const struct mw_config *cfg, const struct mw_job *job, const char *dir)
{
    char path[4096];
    char err[128];
    struct stat st;
    cJSON *manifest = NULL, *report = NULL;
    const cJSON *version;
    char *text = NULL;
    ssize_t got = -1;
    int fd;

    if (snprintf(path, sizeof(path), "%s/" MW_JOB_RESULT, dir) >= (int)sizeof(path) ||
        (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
        return NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size <= MANIFEST_MAX_BYTES &&
        (text = av_malloc((size_t)st.st_size)))
        got = read(fd, text, (size_t)st.st_size);
    close(fd);
    /* Control characters are the file's metadata (a title with a line break), escaped as in every report. */
    if (got == st.st_size &&
        mw_json_parse_strict(text, (size_t)got, MW_JSON_ALLOW_CONTROL, &manifest, err, sizeof(err)) == 0) {
        version = cJSON_GetObjectItemCaseSensitive(manifest, "version");
        report = cJSON_GetObjectItemCaseSensitive(manifest, "report");
        if (!cJSON_IsNumber(version) || version->valuedouble != MANIFEST_VERSION ||
            strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(manifest, "digest")) ?: "", job->digest) ||
            !cJSON_IsObject(report) ||
            strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(report, "job_id")) ?: "", job->job_id) ||
            strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(report, "status")) ?: "", "processed") ||
            !outputs_in_place(cfg, job, report))
            report = NULL;
        else
            report = cJSON_DetachItemFromObjectCaseSensitive(manifest, "report");
    }
    av_free(text);
    cJSON_Delete(manifest);
    return report;
}

static int has_committed_result(const struct mw_config *cfg, const struct mw_job *job, const char *dir)
{
    cJSON *committed = read_manifest(cfg, job, dir);

    cJSON_Delete(committed);
    return committed != NULL;
}

int mw_job_committed_result(const struct mw_config *cfg, const struct mw_job *job, cJSON **report)
{
    char dir[2048];

    *report = NULL;
    if (!mw_job_writes_outputs(job) || mw_job_output_path(cfg, job, dir, sizeof(dir)) < 0)
        return 0;
    *report = read_manifest(cfg, job, dir);
    return *report != NULL;
}

/* Removes path, and below it up to depth levels of subdirectories; links are removed, never followed. */
static void remove_entry(const char *path, int depth)
{
    struct stat st;
    struct dirent *entry;
    DIR *dir;

    if (lstat(path, &st) < 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    if (depth > 0 && (dir = opendir(path))) {
        while ((entry = readdir(dir))) {
            char child[4096];
            if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..") &&
                snprintf(child, sizeof(child), "%s/%s", path, entry->d_name) < (int)sizeof(child))
                remove_entry(child, depth - 1);
        }
        closedir(dir);
    }
    rmdir(path);
}

/* With the marker held exclusively: everything in the folder, the marker last, then the folder if we may. */
static void remove_folder(const char *dir)
{
    char marker[4096];
    struct dirent *entry;
    DIR *d = opendir(dir);

    if (!d)
        return;
    while ((entry = readdir(d))) {
        char path[4096];
        if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..") && strcmp(entry->d_name, MW_JOB_MARKER) &&
            snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name) < (int)sizeof(path))
            remove_entry(path, FOLDER_DEPTH);
    }
    closedir(d);
    if (snprintf(marker, sizeof(marker), "%s/" MW_JOB_MARKER, dir) < (int)sizeof(marker))
        unlink(marker);
    /* Fails harmlessly inside a job process's sandbox, which may not change the folder's parent: the
     * supervisor removes the empty folder after the job. */
    rmdir(dir);
}

int mw_job_discard_unfinished(struct mw_job_context *ctx)
{
    if (ctx->marker_fd < 0 || flock(ctx->marker_fd, LOCK_EX | LOCK_NB) < 0 ||
        has_committed_result(ctx->cfg, ctx->job, ctx->output_dir))
        return 0;
    remove_folder(ctx->output_dir);
    return 1;
}

void mw_job_release_output_dir(struct mw_job_context *ctx)
{
    if (ctx->marker_fd >= 0)
        close(ctx->marker_fd);
    ctx->marker_fd = -1;
}

/*
 * Output names are the worker's own and never contain ".tmp", so everything in the folder that does is a
 * temporary of an interrupted write: `name.tmp.<pid>` (atomic writes, the manifest's too),
 * `.name.<pid>.tmp` (renditions) and `.hls.<pid>.tmp/` (HLS).
 */
static void remove_temporaries(const char *dir)
{
    struct dirent *entry;
    DIR *d = opendir(dir);

    if (!d)
        return;
    while ((entry = readdir(d))) {
        size_t len = strlen(entry->d_name);
        char path[4096];

        if ((strstr(entry->d_name, ".tmp.") || (len > 4 && !strcmp(entry->d_name + len - 4, ".tmp"))) &&
            snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name) < (int)sizeof(path)) {
            mw_log(MW_LOG_INFO, "job", "removing a temporary left by an interrupted attempt: %s", entry->d_name);
            remove_entry(path, FOLDER_DEPTH);
        }
    }
    closedir(d);
}

int mw_job_tidy_output_folder(const struct mw_config *cfg, const struct mw_job *job)
{
    char dir[2048];
    char marker[4096];
    char found[MW_JOB_DIGEST_SIZE];
    int fd, removed = 0;

    if (!mw_job_writes_outputs(job) || mw_job_output_path(cfg, job, dir, sizeof(dir)) < 0 ||
        snprintf(marker, sizeof(marker), "%s/" MW_JOB_MARKER, dir) >= (int)sizeof(marker))
        return 0;
    fd = open(marker, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        /* Never claimed: at most the empty folder a job process was given; rmdir keeps anything else. */
        rmdir(dir);
        return 0;
    }
    /* Busy (another attempt of this message is writing), or another message's folder: not ours to touch. */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && still_linked(fd, marker) && read_marker(fd, found) == 0 &&
        !strcmp(found, job->digest)) {
        if (has_committed_result(cfg, job, dir)) {
            remove_temporaries(dir);
        } else {
            mw_log(MW_LOG_INFO, "job", "removing the outputs of unfinished work");
            remove_folder(dir);
            removed = 1;
        }
    }
    close(fd);
    return removed;
}
