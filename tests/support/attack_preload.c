/*
 * Attack code for tests/integration/test_hostile_job.py, loaded into the worker with LD_PRELOAD. It stands in
 * for a decoder exploited by a hostile upload: when a job's process opens its input with libavformat (so
 * after the sandbox is applied), it tries to reach outside its job and prints one line per attempt on
 * stderr: "ATTACK <name> blocked|SUCCEEDED <detail>". With ATTACK_FORGE_INPUT set, a job whose open input
 * file's path contains that text instead writes forged answer frames on every socket it holds, and other
 * jobs do nothing. With ATTACK_SCAN_MARKER_REVERSED set, every job searches its own memory (each writable
 * mapping its warm process had) for that text, reversed so the environment holding it never matches: the job
 * whose input path contains it must find it (its own request, proof that the scan sees the heap), every other
 * job must not (a previous job's data left in the warm process it was forked from). Nothing happens in any
 * other process.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
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

#define MAPS_TEXT_MAX (1 << 20)
/* Larger mappings are reservations (AddressSanitizer's shadow and allocator space), not a heap with data. */
#define MAPPING_SCAN_MAX ((unsigned long)1 << 30)

/* /proc/self/maps of the warm process, opened before any sandbox: a job's child inherits it (and has the same
 * mappings, forked), while the job's sandbox keeps it from opening /proc itself. */
static int warm_maps_fd = -1;
static sigjmp_buf unreadable_mapping;

__attribute__((constructor)) static void open_warm_maps(void)
{
    if (getenv("ATTACK_SCAN_MARKER_REVERSED"))
        warm_maps_fd = open("/proc/self/maps", O_RDONLY);
}

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

static void skip_mapping(int sig)
{
    (void)sig;
    siglongjmp(unreadable_mapping, 1);
}

static volatile int scan_hits;

/*
 * Counts hits of needle in [start, end) into scan_hits, not needle's own bytes. A plain loop, not memmem:
 * under AddressSanitizer memmem is intercepted, and would refuse to read the freed (poisoned) blocks
 * searched here.
 */
__attribute__((noinline)) static void count_hits(const char *start, const char *end, const char *needle, size_t length)
{
    for (const char *at = start; end - at >= (ptrdiff_t)length; at++) {
        size_t same = 0;
        while (same < length && at[same] == needle[same])
            same++;
        scan_hits += same == length && at != needle;
    }
}

/* A page that faults ends that mapping's search. */
static void search_mapping(const char *start, const char *end, const char *needle, size_t length)
{
    if (sigsetjmp(unreadable_mapping, 1) == 0)
        count_hits(start, end, needle, length);
}

/* Searches every writable mapping for the marker; returns the hits, *scanned the bytes searched. */
static int scan_memory(const char *reversed, size_t *scanned)
{
    static char maps[MAPS_TEXT_MAX];
    /* Static: the one spelled-out copy, which the search skips (one on the stack left copies behind). */
    static char needle[256];
    size_t length = strlen(reversed), used = 0;
    struct sigaction skip = {.sa_handler = skip_mapping}, old_segv, old_bus;
    ssize_t got;

    *scanned = 0;
    scan_hits = 0;
    if (warm_maps_fd < 0 || length >= sizeof(needle) || !length)
        return -1;
    for (size_t i = 0; i < length; i++)
        needle[i] = reversed[length - 1 - i];
    needle[length] = '\0';
    while (used < sizeof(maps) - 1 &&
           (got = pread(warm_maps_fd, maps + used, sizeof(maps) - 1 - used, (off_t)used)) > 0)
        used += (size_t)got;
    maps[used] = '\0';
    if (sigaction(SIGSEGV, &skip, &old_segv) < 0 || sigaction(SIGBUS, &skip, &old_bus) < 0)
        return -1;
    for (char *line = maps; line && *line;) {
        char *next = strchr(line, '\n');
        unsigned long start, end;
        char perms[8];
        if (next)
            *next++ = '\0';
        if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 && perms[0] == 'r' && perms[1] == 'w' &&
            end - start <= MAPPING_SCAN_MAX) {
            search_mapping((const char *)start, (const char *)end, needle, length);
            *scanned += end - start;
        }
        line = next;
    }
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    return scan_hits;
}

static void scan(const char *reversed, int own_job)
{
    size_t scanned;
    int hits = scan_memory(reversed, &scanned);
    char detail[96];

    snprintf(detail, sizeof(detail), "hits=%d scanned=%zu", hits, scanned);
    if (own_job)
        fprintf(stderr, "ATTACK scan-own %s %s\n", hits > 0 ? "found" : "missing", detail);
    else
        report("scan-earlier-job", hits == 0, detail);
}

/*
 * True when one of the descriptors names a file whose path contains text (the job's input, opened for it),
 * or with reversed set, whose reversed path does: the scan's marker is never spelled out, so nothing but
 * its needle can match.
 */
static int holds_file(const char *text, int reversed)
{
    for (int fd = 0; fd < 256; fd++) {
        char link[64], target[4096];
        ssize_t len;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        len = readlink(link, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = '\0';
            for (ssize_t i = 0; reversed && i < len / 2; i++) {
                char c = target[i];
                target[i] = target[len - 1 - i];
                target[len - 1 - i] = c;
            }
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
        const char *scan_marker = getenv("ATTACK_SCAN_MARKER_REVERSED");
        done = 1;
        if (scan_marker)
            scan(scan_marker, holds_file(scan_marker, 1));
        else if (!forge_input)
            attack();
        else if (holds_file(forge_input, 0))
            forge();
    }
    return real(ps, url, fmt, options);
}
