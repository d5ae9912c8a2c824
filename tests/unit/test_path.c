#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mediaworker/error.h"
#include "mediaworker/path.h"

static char root[512];
static char outside[512];

static void write_file(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("data", f);
    fclose(f);
}

static int make_tree(void **state)
{
    char path[1024];
    char base[] = "/tmp/mw-path-test-XXXXXX";

    (void)state;
    if (!mkdtemp(base))
        return -1;
    snprintf(root, sizeof(root), "%s/root", base);
    snprintf(outside, sizeof(outside), "%s/outside", base);
    mkdir(root, 0755);
    mkdir(outside, 0755);
    snprintf(path, sizeof(path), "%s/uploads", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/uploads/clip.mp4", root);
    write_file(path);
    snprintf(path, sizeof(path), "%s/secret.mp4", outside);
    write_file(path);
    /* A sibling whose name starts with the root's: must not count as inside. */
    snprintf(path, sizeof(path), "%s2", root);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s2/x.mp4", root);
    write_file(path);
    snprintf(path, sizeof(path), "%s/uploads/escape.mp4", root);
    if (symlink("../../outside/secret.mp4", path) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/uploads/inside-link.mp4", root);
    if (symlink("clip.mp4", path) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/uploads/fifo.mp4", root);
    if (mkfifo(path, 0644) < 0)
        return -1;
    return 0;
}

static void text_policy_refuses_hostile_names(void **state)
{
    static const char *const hostile[] = {
        "", "../etc/passwd", "uploads/../../etc/passwd", "a/..", "concat:a.mp4|b.mp4", "subfile,,start,0,end,0,,:x",
        "pipe:0", "data:video/mp4;base64,AAAA", "file:clip.mp4", "FILE:clip.mp4", "img%03d.png", "clip*.mp4",
        "clip?.mp4", "clip[1].mp4", "a\nb.mp4", "a|b", "http://example.com/x.mp4", "a\\b.mp4",
    };
    const char *reason = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        reason = NULL;
        assert_int_equal(mw_path_check_text(hostile[i], &reason), MW_ERR_PATH_REFUSED);
        assert_non_null(reason);
    }
    assert_int_equal(mw_path_check_text("uploads/42/clip.mov", &reason), 0);
    assert_int_equal(mw_path_check_text("uploads/..hidden/a..b.mp4", &reason), 0);
}

static void resolves_inside_the_root(void **state)
{
    char resolved[1024];
    char expected[1024];
    const char *reason = NULL;

    (void)state;
    assert_int_equal(mw_path_resolve(root, "uploads/clip.mp4", resolved, sizeof(resolved), &reason), 0);
    snprintf(expected, sizeof(expected), "%s/uploads/clip.mp4", root);
    assert_string_equal(resolved, expected);
    /* A symlink that stays inside the root is fine and resolves to its target. */
    assert_int_equal(mw_path_resolve(root, "uploads/inside-link.mp4", resolved, sizeof(resolved), &reason), 0);
    assert_string_equal(resolved, expected);
    /* An absolute path is accepted when it is inside the root. */
    assert_int_equal(mw_path_resolve(root, expected, resolved, sizeof(resolved), &reason), 0);
}

static void refuses_escapes_and_odd_files(void **state)
{
    char resolved[1024];
    char absolute[1024];
    const char *reason = NULL;

    (void)state;
    assert_int_equal(mw_path_resolve(root, "uploads/escape.mp4", resolved, sizeof(resolved), &reason),
                     MW_ERR_PATH_REFUSED);
    assert_string_equal(reason, "resolves outside the input root");
    snprintf(absolute, sizeof(absolute), "%s/secret.mp4", outside);
    assert_int_equal(mw_path_resolve(root, absolute, resolved, sizeof(resolved), &reason), MW_ERR_PATH_REFUSED);
    snprintf(absolute, sizeof(absolute), "%s2/x.mp4", root);
    assert_int_equal(mw_path_resolve(root, absolute, resolved, sizeof(resolved), &reason), MW_ERR_PATH_REFUSED);
    assert_int_equal(mw_path_resolve(root, "/etc/passwd", resolved, sizeof(resolved), &reason), MW_ERR_PATH_REFUSED);
    assert_int_equal(mw_path_resolve(root, "uploads", resolved, sizeof(resolved), &reason), MW_ERR_NOT_REGULAR_FILE);
    assert_int_equal(mw_path_resolve(root, "uploads/fifo.mp4", resolved, sizeof(resolved), &reason),
                     MW_ERR_NOT_REGULAR_FILE);
    assert_int_equal(mw_path_resolve(root, "uploads/missing.mp4", resolved, sizeof(resolved), &reason),
                     AVERROR(ENOENT));
}

static void output_components(void **state)
{
    (void)state;
    assert_true(mw_path_component_ok("0b7c-12_ab.c"));
    assert_false(mw_path_component_ok(""));
    assert_false(mw_path_component_ok(".."));
    assert_false(mw_path_component_ok("a/b"));
    assert_false(mw_path_component_ok("a b"));
}

static void atomic_write_leaves_only_the_final_file(void **state)
{
    char dir[1024];
    char path[1200];
    char content[16] = "";
    FILE *f;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/out/1/job", outside);
    assert_int_equal(mw_path_mkdirs(dir), 0);
    assert_int_equal(mw_path_mkdirs(dir), 0);
    snprintf(path, sizeof(path), "%s/probe.json", dir);
    assert_int_equal(mw_path_write_atomic(path, "{}\n", 3), 0);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(content, sizeof(content), f));
    fclose(f);
    assert_string_equal(content, "{}\n");
    snprintf(path, sizeof(path), "%s/no-such-dir/x", dir);
    assert_true(mw_path_write_atomic(path, "x", 1) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_policy_refuses_hostile_names),
        cmocka_unit_test(resolves_inside_the_root),
        cmocka_unit_test(refuses_escapes_and_odd_files),
        cmocka_unit_test(output_components),
        cmocka_unit_test(atomic_write_leaves_only_the_final_file),
    };
    return cmocka_run_group_tests(tests, make_tree, NULL);
}
