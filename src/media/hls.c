/*
 * HLS around the hls muxer: the muxer writes one VOD media playlist per rendition with its segments; here
 * the playlists are read back (as the output check, and to measure real segment bitrates), the master
 * playlist is written, and the finished directory replaces the previous one in one rename.
 *
 * BANDWIDTH in the master playlist is the peak segment bitrate actually written, as the HLS spec defines
 * it, not a configured cap: players pick variants by it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavutil/error.h>

#include "mediaworker/error.h"
#include "mediaworker/log.h"
#include "mediaworker/path.h"
#include "transcode_internal.h"

int mw_hls_playlist_stats(const char *playlist, struct mw_hls_stats *stats)
{
    const char *slash = strrchr(playlist, '/');
    int dir_length = slash ? (int)(slash - playlist) : 1;
    FILE *file = fopen(playlist, "r");
    char line[1024];
    double segment_s = -1;
    int64_t bytes = 0;
    int ended = 0;
    int ret = 0;

    memset(stats, 0, sizeof(*stats));
    if (!file)
        return AVERROR(errno);
    if (!fgets(line, sizeof(line), file) || strncmp(line, "#EXTM3U", 7)) {
        ret = AVERROR_INVALIDDATA;
        goto end;
    }
    while (fgets(line, sizeof(line), file)) {
        char segment[2048];
        struct stat st;

        line[strcspn(line, "\r\n")] = '\0';
        if (!strncmp(line, "#EXTINF:", 8)) {
            segment_s = strtod(line + 8, NULL);
        } else if (!strcmp(line, "#EXT-X-ENDLIST")) {
            ended = 1;
        } else if (line[0] && line[0] != '#') {
            if (segment_s <= 0 || strchr(line, '/')) {
                ret = AVERROR_INVALIDDATA;
                goto end;
            }
            snprintf(segment, sizeof(segment), "%.*s/%s", dir_length, slash ? playlist : ".", line);
            if (stat(segment, &st) < 0 || st.st_size == 0) {
                ret = AVERROR_INVALIDDATA;
                goto end;
            }
            if (!stats->segments)
                snprintf(stats->first_segment, sizeof(stats->first_segment), "%.200s", line);
            snprintf(stats->last_segment, sizeof(stats->last_segment), "%.200s", line);
            stats->segments++;
            stats->duration_s += segment_s;
            bytes += st.st_size;
            if ((int64_t)(st.st_size * 8 / segment_s) > stats->peak_bps)
                stats->peak_bps = (int64_t)(st.st_size * 8 / segment_s);
            segment_s = -1;
        }
    }
    /* A VOD playlist without its end tag, or without segments, is one a player would wait on forever. */
    if (!ended || !stats->segments || ferror(file))
        ret = AVERROR_INVALIDDATA;
    else
        stats->average_bps = (int64_t)(bytes * 8 / stats->duration_s);
end:
    fclose(file);
    return ret;
}

int mw_hls_write_master(const char *path, const struct mw_hls_variant *variants, int count)
{
    char text[8192];
    size_t used;
    int n;

    used = (size_t)snprintf(text, sizeof(text), "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (int i = 0; i < count; i++) {
        const struct mw_hls_variant *v = &variants[i];

        n = snprintf(text + used, sizeof(text) - used, "#EXT-X-STREAM-INF:BANDWIDTH=%lld,AVERAGE-BANDWIDTH=%lld",
                     (long long)v->bandwidth, (long long)v->average_bandwidth);
        if (n > 0 && (size_t)n < sizeof(text) - used && v->height) {
            used += (size_t)n;
            n = snprintf(text + used, sizeof(text) - used, ",RESOLUTION=%dx%d,FRAME-RATE=%.3f", v->width, v->height,
                         v->frame_rate.num > 0 ? av_q2d(v->frame_rate) : 30.0);
        }
        if (n > 0 && (size_t)n < sizeof(text) - used) {
            used += (size_t)n;
            n = snprintf(text + used, sizeof(text) - used, ",CODECS=\"%s\"\n%s\n", v->codecs, v->uri);
        }
        if (n < 0 || (size_t)n >= sizeof(text) - used)
            return AVERROR(ENAMETOOLONG);
        used += (size_t)n;
    }
    return mw_path_write_atomic(path, text, used);
}

static void remove_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *entry;

    if (!d)
        return;
    while ((entry = readdir(d))) {
        char child[2048];
        struct stat st;

        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
            continue;
        snprintf(child, sizeof(child), "%s/%s", dir, entry->d_name);
        if (lstat(child, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0)
            remove_tree(child, depth - 1);
        else
            unlink(child);
    }
    closedir(d);
    rmdir(dir);
}

void mw_hls_remove_dir(const char *dir)
{
    remove_tree(dir, 2);
}

/* fsyncs every file and directory under dir (depth levels of subdirectories), then dir itself. */
static int sync_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *entry;
    int ret = 0, fd;

    if (!d)
        return AVERROR(errno);
    while (ret >= 0 && (entry = readdir(d))) {
        char child[2048];
        struct stat st;

        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
            continue;
        snprintf(child, sizeof(child), "%s/%s", dir, entry->d_name);
        if (lstat(child, &st) < 0) {
            ret = AVERROR(errno);
        } else if (S_ISDIR(st.st_mode) && depth > 0) {
            ret = sync_tree(child, depth - 1);
        } else if (S_ISREG(st.st_mode)) {
            if ((fd = open(child, O_RDONLY | O_CLOEXEC)) < 0)
                ret = AVERROR(errno);
            else if (fsync(fd) < 0)
                ret = AVERROR(errno);
            if (fd >= 0)
                close(fd);
        }
    }
    closedir(d);
    if (ret < 0)
        return ret;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return AVERROR(errno);
    ret = fsync(fd) < 0 ? AVERROR(errno) : 0;
    close(fd);
    return ret;
}

int mw_hls_commit_dir(const char *tmp_dir, const char *final_dir)
{
    char old[2048];
    char parent[2048];
    const char *slash = strrchr(final_dir, '/');
    int had_old, ret, fd;

    /* Segments and playlists reach the disk before the directory becomes visible under its final name. */
    if ((ret = sync_tree(tmp_dir, 2)) < 0)
        return ret;

    /* rename() cannot replace a non-empty directory: move the previous run's away first, then drop it. */
    snprintf(old, sizeof(old), "%s.old.%ld", final_dir, (long)getpid());
    had_old = rename(final_dir, old) == 0;
    if (!had_old && errno != ENOENT)
        return AVERROR(errno);
    if (rename(tmp_dir, final_dir) < 0) {
        ret = AVERROR(errno);
        /* The moved-away directory is then the only copy of the previous outputs: keep it for an operator. */
        if (had_old && rename(old, final_dir) < 0) {
            int err = AVERROR(errno);
            mw_log(MW_LOG_ERROR, "hls", "could not move the previous %s back (%s): it remains at %s", final_dir,
                   mw_err2str(err), old);
        }
        return ret;
    }
    if (had_old)
        mw_hls_remove_dir(old);
    snprintf(parent, sizeof(parent), "%.*s", slash ? (int)(slash - final_dir) : 1, slash ? final_dir : ".");
    if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return AVERROR(errno);
    ret = fsync(fd) < 0 ? AVERROR(errno) : 0;
    close(fd);
    return ret;
}
