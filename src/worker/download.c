#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libavutil/error.h>

#include "mediaworker/download.h"
#include "mediaworker/error.h"
#include "mediaworker/job.h"
#include "mediaworker/log.h"
#include "mediaworker/netpolicy.h"
#include "mediaworker/path.h"
#include "curl_cancel_internal.h"

/* Below this many bytes per second for LOW_SPEED_SECONDS a server is considered stalled. */
#define LOW_SPEED_BYTES 1024
#define LOW_SPEED_SECONDS 30

struct transfer {
    struct mw_netpolicy policy;
    const atomic_int *cancel;       /* may be NULL */
    int fd;
    int64_t received;
    int64_t max_bytes;
    int refused_address;            /* the policy denied a connection */
    int too_large;
    int write_errno;
    char refused_reason[160];
};

static curl_socket_t open_checked_socket(void *opaque, curlsocktype purpose, struct curl_sockaddr *address)
{
    struct transfer *t = opaque;
    const char *reason = NULL;
    char text[64] = "?";

    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!mw_netpolicy_allows(&t->policy, &address->addr, &reason)) {
        const void *raw = address->family == AF_INET6
                              ? (const void *)&((const struct sockaddr_in6 *)(const void *)&address->addr)->sin6_addr
                              : (const void *)&((const struct sockaddr_in *)(const void *)&address->addr)->sin_addr;
        inet_ntop(address->family, raw, text, sizeof(text));
        snprintf(t->refused_reason, sizeof(t->refused_reason), "%s is %s", text, reason ? reason : "denied");
        t->refused_address = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

static size_t write_body(char *data, size_t size, size_t count, void *opaque)
{
    struct transfer *t = opaque;
    size_t length = size * count;
    size_t done = 0;

    if (t->received + (int64_t)length > t->max_bytes) {
        t->too_large = 1;
        return 0;
    }
    while (done < length) {
        ssize_t written = write(t->fd, data + done, length - done);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0) {
            t->write_errno = errno;
            return 0;
        }
        done += (size_t)written;
    }
    t->received += (int64_t)length;
    return length;
}

static int configure(CURL *curl, const struct mw_config *cfg, const char *url, struct transfer *t, char *curl_error)
{
    if (curl_easy_setopt(curl, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_MAXREDIRS, (long)cfg->url_max_redirects) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*") != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_checked_socket) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, t) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, t) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->url_max_bytes) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)cfg->url_timeout_s) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_SECONDS) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, mw_curl_cancel_progress) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t->cancel) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "mediaworker/" MW_VERSION_STRING) != CURLE_OK)
        return AVERROR(EINVAL);
    return 0;
}

/* Maps the transfer's outcome to our codes: the policy and the cap first, as curl only sees their effect. */
static int classify(CURLcode code, long status, const struct transfer *t, const char *curl_error, char *err,
                    size_t err_size)
{
    if (t->refused_address) {
        snprintf(err, err_size, "connection refused by the network policy: %s", t->refused_reason);
        return MW_ERR_URL_REFUSED;
    }
    if (t->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, err_size, "body is larger than %lld bytes", (long long)t->max_bytes);
        return MW_ERR_DOWNLOAD_TOO_LARGE;
    }
    if (t->write_errno) {
        snprintf(err, err_size, "writing the download failed: %s", strerror(t->write_errno));
        return AVERROR(t->write_errno);
    }
    if (code == CURLE_UNSUPPORTED_PROTOCOL) {
        snprintf(err, err_size, "only http and https are allowed: %s", curl_error);
        return MW_ERR_URL_REFUSED;
    }
    if (code == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(err, err_size, "download stopped: the worker is shutting down");
        return MW_ERR_DOWNLOAD_FAILED;
    }
    if (code == CURLE_TOO_MANY_REDIRECTS) {
        snprintf(err, err_size, "more redirects than the configured limit");
        return MW_ERR_DOWNLOAD_REJECTED;
    }
    if (code != CURLE_OK) {
        snprintf(err, err_size, "%s", curl_error[0] ? curl_error : curl_easy_strerror(code));
        return MW_ERR_DOWNLOAD_FAILED;
    }
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
        snprintf(err, err_size, "server answered HTTP %ld", status);
        return MW_ERR_DOWNLOAD_REJECTED;
    }
    if (status < 200 || status >= 300) {
        snprintf(err, err_size, "server answered HTTP %ld", status);
        return MW_ERR_DOWNLOAD_FAILED;
    }
    return 0;
}

int mw_download(const struct mw_config *cfg, const char *url, const char *dest_path, const atomic_int *cancel,
                int64_t *bytes, char *err, size_t err_size)
{
    struct transfer t = {.fd = -1, .max_bytes = cfg->url_max_bytes, .cancel = cancel};
    char curl_error[CURL_ERROR_SIZE] = "";
    char tmp[4096];
    CURL *curl = NULL;
    CURLcode code;
    long status = 0;
    int ret;

    if (bytes)
        *bytes = 0;
    ret = mw_netpolicy_parse(&t.policy, cfg->url_allow_networks, err, err_size);
    if (ret < 0)
        return ret;
    if (snprintf(tmp, sizeof(tmp), "%s.part", dest_path) >= (int)sizeof(tmp))
        return AVERROR(ENAMETOOLONG);
    t.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (t.fd < 0) {
        ret = AVERROR(errno);
        snprintf(err, err_size, "cannot create %s: %s", tmp, strerror(errno));
        return ret;
    }
    curl = curl_easy_init();
    if (!curl) {
        ret = AVERROR(ENOMEM);
        goto end;
    }
    ret = configure(curl, cfg, url, &t, curl_error);
    if (ret < 0) {
        snprintf(err, err_size, "libcurl lacks a required option");
        goto end;
    }
    code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    ret = classify(code, status, &t, curl_error, err, err_size);
    if (ret < 0)
        goto end;
    if (close(t.fd) < 0) {
        t.fd = -1;
        ret = AVERROR(errno);
        goto end;
    }
    t.fd = -1;
    if (rename(tmp, dest_path) < 0) {
        ret = AVERROR(errno);
        snprintf(err, err_size, "cannot rename the download: %s", strerror(errno));
        goto end;
    }
    if (bytes)
        *bytes = t.received;
    mw_log(MW_LOG_DEBUG, "download", "downloaded %lld bytes", (long long)t.received);
end:
    curl_easy_cleanup(curl);
    if (t.fd >= 0)
        close(t.fd);
    if (ret < 0)
        unlink(tmp);
    return ret;
}

int mw_download_job_input(const struct mw_config *cfg, struct mw_job *job, const atomic_int *cancel, char *scratch,
                          size_t size, char *err, size_t err_size)
{
    int64_t bytes = 0;
    int ret;

    if (snprintf(scratch, size, "%s/%s", cfg->scratch_dir, job->job_id) >= (int)size)
        return AVERROR(ENAMETOOLONG);
    ret = mw_path_mkdirs(scratch);
    if (ret < 0) {
        snprintf(err, err_size, "cannot create the scratch directory %s", scratch);
        return ret;
    }
    if (snprintf(job->local_input, sizeof(job->local_input), "%s/input", scratch) >= (int)sizeof(job->local_input))
        return AVERROR(ENAMETOOLONG);
    ret = mw_download(cfg, job->url, job->local_input, cancel, &bytes, err, err_size);
    if (ret < 0) {
        job->local_input[0] = '\0';
        return ret;
    }
    mw_log(MW_LOG_INFO, "download", "downloaded %lld bytes", (long long)bytes);
    return 0;
}

void mw_download_job_cleanup(const char *scratch, const struct mw_job *job)
{
    if (!scratch || !scratch[0])
        return;
    if (job->local_input[0])
        unlink(job->local_input);
    rmdir(scratch);
}

int mw_download_scratch_sweep(const struct mw_config *cfg)
{
    DIR *dir = opendir(cfg->scratch_dir);
    struct dirent *entry;
    int removed = 0;

    if (!dir)
        return 0;
    while ((entry = readdir(dir))) {
        char job_dir[4096];
        DIR *inner;
        struct dirent *file;

        /* Job ids are path components without a leading dot; anything else here is not ours. */
        if (entry->d_name[0] == '.' ||
            snprintf(job_dir, sizeof(job_dir), "%s/%s", cfg->scratch_dir, entry->d_name) >= (int)sizeof(job_dir) ||
            !(inner = opendir(job_dir)))
            continue;
        while ((file = readdir(inner))) {
            char path[4352];
            if (strcmp(file->d_name, ".") && strcmp(file->d_name, "..") &&
                snprintf(path, sizeof(path), "%s/%s", job_dir, file->d_name) < (int)sizeof(path))
                unlink(path);
        }
        closedir(inner);
        if (rmdir(job_dir) == 0) {
            mw_log(MW_LOG_WARN, "download", "removed %s, left by a download that was cut short", job_dir);
            removed++;
        }
    }
    closedir(dir);
    return removed;
}
