#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/error.h>

#include "mediaworker/error.h"
#include "mediaworker/path.h"

/* Prefixes libav (or a shell) would interpret instead of treating the name as a plain file. */
static const char *const refused_prefixes[] = {
    "concat:", "subfile,", "pipe:", "data:", "file:", "crypto:", "cache:", "async:", "tee:", "fd:", NULL,
};

static int refuse(const char **reason, const char *why)
{
    if (reason)
        *reason = why;
    return MW_ERR_PATH_REFUSED;
}

int mw_path_check_text(const char *relative, const char **reason)
{
    const char *component;

    if (!relative || !*relative)
        return refuse(reason, "empty path");
    if (strlen(relative) >= PATH_MAX)
        return refuse(reason, "path too long");
    for (const char *const *prefix = refused_prefixes; *prefix; prefix++)
        if (!strncasecmp(relative, *prefix, strlen(*prefix)))
            return refuse(reason, "protocol prefix");
    for (const unsigned char *p = (const unsigned char *)relative; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return refuse(reason, "control character");
        /* image2 patterns (%d, *, ?, [..]), glob braces, concat's '|' and a URL scheme's ':'. */
        if (strchr("%*?[]{}|\\:", *p))
            return refuse(reason, "pattern or protocol character");
    }
    component = relative;
    while (*component) {
        size_t len = strcspn(component, "/");
        if (len == 2 && component[0] == '.' && component[1] == '.')
            return refuse(reason, "'..' component");
        component += len;
        while (*component == '/')
            component++;
    }
    return 0;
}

int mw_path_resolve(const char *root, const char *relative, char *resolved, size_t size, const char **reason)
{
    char root_real[PATH_MAX];
    char joined[PATH_MAX * 2];
    char target[PATH_MAX];
    struct stat st;
    size_t root_len;
    int ret;

    ret = mw_path_check_text(relative, reason);
    if (ret < 0)
        return ret;
    if (!realpath(root, root_real))
        return AVERROR(errno);
    root_len = strlen(root_real);
    if (relative[0] == '/')
        snprintf(joined, sizeof(joined), "%s", relative);
    else
        snprintf(joined, sizeof(joined), "%s/%s", root_real, relative);
    if (!realpath(joined, target))
        return AVERROR(errno);
    /* The canonical target must be strictly below the canonical root: this also catches symlinks that
     * point outside, and an absolute path that names the root's sibling "/srv/uploads2". */
    if (strncmp(target, root_real, root_len) || (root_len > 1 && target[root_len] != '/'))
        return refuse(reason, relative[0] == '/' ? "absolute path outside the input root"
                                                 : "resolves outside the input root");
    if (stat(target, &st) < 0)
        return AVERROR(errno);
    if (!S_ISREG(st.st_mode)) {
        if (reason)
            *reason = "not a regular file";
        return MW_ERR_NOT_REGULAR_FILE;
    }
    if (strlen(target) >= size)
        return refuse(reason, "path too long");
    memcpy(resolved, target, strlen(target) + 1);
    return 0;
}

int mw_path_component_ok(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (!len || len > 200 || !strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
            !strchr("-_.", *p))
            return 0;
    return 1;
}

int mw_path_mkdirs(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path))
        return AVERROR(EINVAL);
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return AVERROR(errno);
        *p = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return AVERROR(errno);
    return 0;
}

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    int fd, ret = 0;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return AVERROR(errno);
    if (fsync(fd) < 0)
        ret = AVERROR(errno);
    close(fd);
    return ret;
}

int mw_path_commit(const char *tmp, const char *path)
{
    int fd, ret = 0;

    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = AVERROR(errno);
        goto end;
    }
    if (fsync(fd) < 0)
        ret = AVERROR(errno);
    close(fd);
    if (ret < 0)
        goto end;
    if (rename(tmp, path) < 0) {
        ret = AVERROR(errno);
        goto end;
    }
    return fsync_parent(path);
end:
    unlink(tmp);
    return ret;
}

int mw_path_write_atomic(const char *path, const void *data, size_t size)
{
    char tmp[PATH_MAX];
    const char *cursor = data;
    int fd, ret = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return AVERROR(ENAMETOOLONG);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return AVERROR(errno);
    while (size > 0) {
        ssize_t written = write(fd, cursor, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0) {
            ret = AVERROR(errno);
            break;
        }
        cursor += written;
        size -= (size_t)written;
    }
    if (close(fd) < 0 && !ret)
        ret = AVERROR(errno);
    if (ret < 0) {
        unlink(tmp);
        return ret;
    }
    return mw_path_commit(tmp, path);
}
