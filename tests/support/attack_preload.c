/*
 * Attack code for tests/integration/test_hostile_job.py, loaded into the worker with LD_PRELOAD. It stands in
 * for a decoder exploited by a hostile upload: when a job's process opens its input with libavformat (so
 * after the sandbox is applied), it tries to reach outside its job and prints one line per attempt on
 * stderr: "ATTACK <name> blocked|SUCCEEDED <detail>". With ATTACK_FORGE_INPUT set, a job whose open input
 * file's path contains that text instead writes forged answer frames on every socket it holds, and other
 * jobs do nothing. Nothing happens in any other process.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct AVFormatContext;
struct AVInputFormat;
struct AVDictionary;

static void report(const char *name, int failed, const char *detail)
{
    fprintf(stderr, "ATTACK %s %s %s\n", name, failed ? "blocked" : "SUCCEEDED", detail);
}

static void try_result(const char *name, long result)
{
    char detail[64];

    snprintf(detail, sizeof(detail), "(%s)", result < 0 ? strerror(errno) : "ok");
    report(name, result < 0, detail);
}

static void try_open(const char *name, const char *path, int flags)
{
    int fd;

    if (!path || !*path) {
        report(name, 0, "(no path given to the test)");
        return;
    }
    fd = open(path, flags, 0644);
    try_result(name, fd);
    if (fd >= 0) {
        if (flags & (O_WRONLY | O_RDWR))
            (void)!write(fd, "x", 1);
        close(fd);
    }
}

static void attack(void)
{
    const char *victim = getenv("ATTACK_VICTIM");
    pid_t pid = victim ? (pid_t)atoi(victim) : 0;
    char environ_path[64];

    try_result("kill-victim", kill(pid, SIGTERM));
    try_result("tgkill-victim", syscall(SYS_tgkill, pid, pid, SIGTERM));
    try_result("tkill-victim", syscall(SYS_tkill, pid, SIGTERM));
    try_result("kill-parent", kill(getppid(), SIGTERM));
    try_result("kill-group", kill(0, SIGCONT));
    try_result("setpriority-victim", setpriority(PRIO_PROCESS, (id_t)pid, 19));
    try_result("setpriority-parent", setpriority(PRIO_PROCESS, (id_t)getppid(), 19));
    try_result("prlimit-victim", syscall(SYS_prlimit64, pid, RLIMIT_NOFILE, NULL, &(struct rlimit){1, 1}));
    try_result("pdeathsig-clear", prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0));
    try_open("write-dev-shm", "/dev/shm/mw-attack", O_WRONLY | O_CREAT);
    try_open("write-dev-kmsg", "/dev/kmsg", O_WRONLY);
    try_open("read-other-upload", getenv("ATTACK_OTHER_UPLOAD"), O_RDONLY);
    try_open("read-input-root-sibling", getenv("ATTACK_SIBLING_UPLOAD"), O_RDONLY);
    try_open("write-other-user", getenv("ATTACK_OTHER_USER_FILE"), O_WRONLY | O_CREAT);
    try_open("write-other-job", getenv("ATTACK_OTHER_JOB_FILE"), O_WRONLY | O_CREAT);
    try_open("write-input-root", getenv("ATTACK_INPUT_ROOT_FILE"), O_WRONLY | O_CREAT);
    snprintf(environ_path, sizeof(environ_path), "/proc/%d/environ", (int)getppid());
    try_open("read-parent-environ", environ_path, O_RDONLY);
    try_open("write-etc", "/etc/mw-attack", O_WRONLY | O_CREAT);
}

/* An extra answer on every socket: one of them leads to the supervisor, which must not take it. */
static void forge(void)
{
    static const char forged[] =
        "{\"nonce\":\"00000000000000000000000000000000\",\"job_id\":\"forged\",\"ret\":0,\"result\":"
        "{\"job_id\":\"forged\",\"status\":\"processed\",\"path\":\"43/victim/thumbnail.jpg\",\"outputs\":[]}}";
    unsigned char header[4] = {0, 0, (unsigned char)((sizeof(forged) - 1) >> 8), (unsigned char)(sizeof(forged) - 1)};
    int sent = 0;

    for (int fd = 0; fd < 256; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && send(fd, header, 4, MSG_NOSIGNAL) == 4 &&
            send(fd, forged, sizeof(forged) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(forged) - 1)
            sent++;
    }
    fprintf(stderr, "ATTACK forge sent %d\n", sent);
}

/* True when one of the descriptors names a file whose path contains text (the job's input, opened for it). */
static int holds_file(const char *text)
{
    for (int fd = 0; fd < 256; fd++) {
        char link[64], target[4096];
        ssize_t len;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        len = readlink(link, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = '\0';
            if (strstr(target, text))
                return 1;
        }
    }
    return 0;
}

int avformat_open_input(struct AVFormatContext **ps, const char *url, const struct AVInputFormat *fmt,
                        struct AVDictionary **options)
{
    int (*real)(struct AVFormatContext **, const char *, const struct AVInputFormat *, struct AVDictionary **) =
        (int (*)(struct AVFormatContext **, const char *, const struct AVInputFormat *, struct AVDictionary **))
            dlsym(RTLD_NEXT, "avformat_open_input");
    char name[32] = "";
    static int done;

    prctl(PR_GET_NAME, name, 0, 0, 0);
    if (!done && !strcmp(name, "mw-job-run")) {
        const char *forge_input = getenv("ATTACK_FORGE_INPUT");
        done = 1;
        if (!forge_input)
            attack();
        else if (holds_file(forge_input))
            forge();
    }
    return real(ps, url, fmt, options);
}
