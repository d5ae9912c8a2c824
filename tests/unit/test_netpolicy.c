#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "mediaworker/error.h"
#include "mediaworker/netpolicy.h"

static int allows(const struct mw_netpolicy *policy, const char *text)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};

    if (inet_pton(AF_INET, text, &v4.sin_addr) == 1)
        return mw_netpolicy_allows(policy, (struct sockaddr *)&v4, NULL);
    assert_int_equal(inet_pton(AF_INET6, text, &v6.sin6_addr), 1);
    return mw_netpolicy_allows(policy, (struct sockaddr *)&v6, NULL);
}

static void internal_addresses_are_denied(void **state)
{
    static const char *const denied[] = {
        "127.0.0.1", "127.255.0.9", "0.0.0.0", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "100.64.0.1", "224.0.0.1", "255.255.255.255", "::1", "::", "fd00::1", "fe80::1",
        "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1",
    };
    struct mw_netpolicy policy;
    char err[128];

    (void)state;
    assert_int_equal(mw_netpolicy_parse(&policy, "", err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
        if (allows(&policy, denied[i]))
            fail_msg("%s should be denied", denied[i]);
}

static void public_addresses_are_allowed(void **state)
{
    static const char *const allowed[] = {"93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111",
                                          "::ffff:8.8.8.8"};
    struct mw_netpolicy policy;
    char err[128];

    (void)state;
    assert_int_equal(mw_netpolicy_parse(&policy, NULL, err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (!allows(&policy, allowed[i]))
            fail_msg("%s should be allowed", allowed[i]);
}

static void allow_list_opens_only_what_it_names(void **state)
{
    struct mw_netpolicy policy;
    const char *reason = NULL;
    struct sockaddr_in metadata = {.sin_family = AF_INET};
    char err[128];

    (void)state;
    assert_int_equal(mw_netpolicy_parse(&policy, "127.0.0.1/32, 10.20.0.0/16,fd12::/16", err, sizeof(err)), 0);
    assert_int_equal(policy.allowed_count, 3);
    assert_true(allows(&policy, "127.0.0.1"));
    assert_false(allows(&policy, "127.0.0.2"));
    assert_true(allows(&policy, "10.20.99.1"));
    assert_false(allows(&policy, "10.21.0.1"));
    assert_true(allows(&policy, "fd12::5"));
    inet_pton(AF_INET, "169.254.169.254", &metadata.sin_addr);
    assert_false(mw_netpolicy_allows(&policy, (struct sockaddr *)&metadata, &reason));
    assert_string_equal(reason, "link-local (cloud metadata)");
}

static void bad_allow_lists_are_config_errors(void **state)
{
    struct mw_netpolicy policy;
    char err[128] = "";

    (void)state;
    assert_int_equal(mw_netpolicy_parse(&policy, "10.0.0.0/33", err, sizeof(err)), MW_ERR_CONFIG);
    assert_non_null(strstr(err, "MW_URL_ALLOW_NETWORKS"));
    assert_int_equal(mw_netpolicy_parse(&policy, "example.com", err, sizeof(err)), MW_ERR_CONFIG);
    assert_int_equal(mw_netpolicy_parse(&policy, "10.0.0.0/", err, sizeof(err)), MW_ERR_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(internal_addresses_are_denied),
        cmocka_unit_test(public_addresses_are_allowed),
        cmocka_unit_test(allow_list_opens_only_what_it_names),
        cmocka_unit_test(bad_allow_lists_are_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
