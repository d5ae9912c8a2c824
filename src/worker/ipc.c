/*
 * Frames over the job-process socketpair. A frame is written with one send() per part and read back with a
 * deadline, so a stuck or dying peer costs at most the job's deadline, never a hang.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <libavutil/error.h>
#include <libavutil/mem.h>
#include <libavutil/time.h>

#include "mediaworker/jobproc.h"

static int write_all(int fd, const uint8_t *data, size_t size)
{
    while (size) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return AVERROR(errno);
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* The header of a frame of size bytes, and its type byte when type is not 0. */
static int write_frame(int fd, char type, const void *data, size_t size)
{
    uint8_t header[5];
    size_t total = size + (type ? 1 : 0);
    int ret;

    if (total > MW_JOBPROC_MAX_FRAME)
        return AVERROR(EMSGSIZE);
    header[0] = (uint8_t)(total >> 24);
    header[1] = (uint8_t)(total >> 16);
    header[2] = (uint8_t)(total >> 8);
    header[3] = (uint8_t)total;
    header[4] = (uint8_t)type;
    ret = write_all(fd, header, type ? 5 : 4);
    if (ret == 0)
        ret = write_all(fd, data, size);
    return ret;
}

int mw_jobproc_frame_write(int fd, const void *data, size_t size)
{
    return write_frame(fd, 0, data, size);
}

int mw_jobproc_frame_write_typed(int fd, char type, const void *data, size_t size)
{
    return write_frame(fd, type, data, size);
}

/* Reads exactly size bytes; AVERROR_EOF when the peer closed before the first byte, INVALIDDATA after. */
static int read_exact(int fd, uint8_t *buf, size_t size, int64_t deadline)
{
    size_t got = 0;

    while (got < size) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int timeout = -1;
        ssize_t n;

        if (deadline) {
            int64_t left = deadline - av_gettime_relative();
            if (left <= 0)
                return AVERROR(ETIMEDOUT);
            timeout = (int)((left + 999) / 1000);
        }
        n = poll(&pfd, 1, timeout);
        if (n < 0 && errno != EINTR)
            return AVERROR(errno);
        if (n <= 0)
            continue;
        n = recv(fd, buf + got, size - got, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return AVERROR(errno);
        }
        if (n == 0)
            return got ? AVERROR_INVALIDDATA : AVERROR_EOF;
        got += (size_t)n;
    }
    return 0;
}

int mw_jobproc_frame_read(int fd, char **data, size_t *size, int64_t deadline)
{
    uint8_t header[4];
    uint32_t length;
    char *buf = NULL;
    int ret;

    *data = NULL;
    *size = 0;
    ret = read_exact(fd, header, sizeof(header), deadline);
    if (ret < 0)
        return ret;
    length = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 | (uint32_t)header[2] << 8 | header[3];
    if (length > MW_JOBPROC_MAX_FRAME)
        return AVERROR_INVALIDDATA;
    buf = av_malloc((size_t)length + 1);
    if (!buf)
        return AVERROR(ENOMEM);
    ret = read_exact(fd, (uint8_t *)buf, length, deadline);
    if (ret < 0) {
        /* Part of a job's frame (its data): wiped like every whole one its reader frees. */
        explicit_bzero(buf, length);
        av_free(buf);
        return ret == AVERROR_EOF ? AVERROR_INVALIDDATA : ret;
    }
    buf[length] = '\0';
    *data = buf;
    *size = length;
    return 0;
}
