/* test_time.c -- the built-in time skill (Semantic Kernel's TimePlugin)
 * on a fixed clock: every function and format, in zones west and east of
 * UTC, SK's bare names in templates, the clock option and SKEIN_NOW. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "all.h"
#include "testutil.h"

static sk_kernel *new_kernel(const char *now)
{
    sk_kernel *k = NULL;
    CHECK(sk_kernel_new(&k) == SK_OK);
    sk_kernel_set_option(k, "quiet", "1");
    CHECK(sk_kernel_load_default_skills(k) == SK_OK);
    if (now)
        CHECK(sk_kernel_set_option(k, "now", now) == SK_OK);
    return k;
}

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* The result of fn with input (may be NULL); NULL on failure (*st says). */
static char *call(sk_kernel *k, const char *fn, const char *name,
                  const char *value, sk_status *st)
{
    sk_vars *v = NULL;
    sk_vars_new(&v);
    if (value)
        sk_vars_set(v, name ? name : "input", value);
    char *out = NULL;
    *st = sk_invoke(k, fn, v, NULL, &out);
    sk_vars_free(v);
    return out;
}

static void expect(sk_kernel *k, const char *fn, const char *want)
{
    sk_status st;
    char *out = call(k, fn, NULL, NULL, &st);
    if (st != SK_OK)
        fprintf(stderr, "  %s: %s\n", fn, sk_errmsg(k));
    CHECK_STR(out, want);
    sk_free(out);
}

static void expect_arg(sk_kernel *k, const char *fn, const char *name,
                       const char *value, const char *want)
{
    sk_status st;
    char *out = call(k, fn, name, value, &st);
    if (st != SK_OK)
        fprintf(stderr, "  %s(%s): %s\n", fn, value, sk_errmsg(k));
    CHECK_STR(out, want);
    sk_free(out);
}

static void expect_fail(sk_kernel *k, const char *fn, const char *name,
                        const char *value, const char *msg)
{
    sk_status st;
    char *out = call(k, fn, name, value, &st);
    CHECK(out == NULL);
    CHECK_INT(st, SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), msg);
    sk_free(out);
}

/* SK's own documented example: Sunday 12 January 2031, 9:15:07 PM in
 * Pacific time (05:15:07 UTC on the 13th). */
TEST(test_pacific_evening)
{
    set_tz("PST8PDT,M3.2.0,M11.1.0");
    sk_kernel *k = new_kernel("2031-01-13T05:15:07Z");
    expect(k, "time.Date", "Sunday, 12 January, 2031");
    expect(k, "time.Today", "Sunday, 12 January, 2031");
    expect(k, "time.iso_date", "2031-01-12");
    expect(k, "time.Now", "Sunday, January 12, 2031 9:15 PM");
    expect(k, "time.UtcNow", "Monday, January 13, 2031 5:15 AM");
    expect(k, "time.Time", "09:15:07 PM");
    expect(k, "time.Year", "2031");
    expect(k, "time.Month", "January");
    expect(k, "time.MonthNumber", "01");
    expect(k, "time.month_number", "01");
    expect(k, "time.Day", "12");
    expect(k, "time.DayOfWeek", "Sunday");
    expect(k, "time.Hour", "9 PM");
    expect(k, "time.HourNumber", "21");
    expect(k, "time.Minute", "15");
    expect(k, "time.Second", "07");
    expect(k, "time.TimeZoneOffset", "-08:00");
    expect(k, "time.TimeZoneName", "PST");
    /* names are case-insensitive, as in SK */
    expect(k, "TIME.date", "Sunday, 12 January, 2031");
    expect(k, "time.utcnow", "Monday, January 13, 2031 5:15 AM");
    expect(k, "time.dayofweek", "Sunday");

    /* days ago: a number of days, fractions on the wall clock as .NET's
     * AddDays, negative into the future */
    expect_arg(k, "time.DaysAgo", NULL, "3", "Thursday, 09 January, 2031");
    expect_arg(k, "time.daysAgo", NULL, " 0 ", "Sunday, 12 January, 2031");
    expect_arg(k, "time.DaysAgo", NULL, "-1", "Monday, 13 January, 2031");
    expect_arg(k, "time.DaysAgo", NULL, "0.8", "Sunday, 12 January, 2031"); /* 9:15 PM - 19.2 h */
    expect_arg(k, "time.DaysAgo", NULL, "0.95", "Saturday, 11 January, 2031");
    expect_arg(k, "time.DaysAgo", NULL, "365", "Saturday, 12 January, 2030");
    expect_arg(k, "time.days_ago", "days", "12", "Tuesday, 31 December, 2030");
    expect_fail(k, "time.DaysAgo", NULL, "three", "input must be a number of days, got \"three\"");
    expect_fail(k, "time.DaysAgo", NULL, "", "input must be a number of days");
    expect_fail(k, "time.DaysAgo", NULL, "nan", "must be a number of days");
    expect_fail(k, "time.DaysAgo", NULL, "1e300", "at most 3650000 days");
    expect_fail(k, "time.days_ago", "days", "x", "days must be a number of days");

    /* the last such weekday, from yesterday back: on a Sunday, "Sunday"
     * is a week ago */
    expect_arg(k, "time.DateMatchingLastDayName", NULL, "Tuesday", "Tuesday, 07 January, 2031");
    expect_arg(k, "time.DateMatchingLastDayName", NULL, "saturday", "Saturday, 11 January, 2031");
    expect_arg(k, "time.DateMatchingLastDayName", NULL, "Sunday", "Sunday, 05 January, 2031");
    expect_arg(k, "time.date_matching_last_day_name", "day_name", "MONDAY", "Monday, 06 January, 2031");
    expect_fail(k, "time.DateMatchingLastDayName", NULL, "Martedi",
                "input must be an English day name (Monday ... Sunday), got \"Martedi\"");
    expect_fail(k, "time.date_matching_last_day_name", "day_name", "", "day_name must be an English day name");
    sk_kernel_free(k);
}

/* East of UTC in summer time, the small hours: 12-hour clock edges and a
 * positive offset. */
TEST(test_central_europe_summer)
{
    set_tz("CET-1CEST,M3.5.0,M10.5.0/3");
    sk_kernel *k = new_kernel("2031-07-03T22:05:09Z"); /* 00:05:09 CEST on the 4th */
    expect(k, "time.Date", "Friday, 04 July, 2031");
    expect(k, "time.Now", "Friday, July 4, 2031 12:05 AM");
    expect(k, "time.UtcNow", "Thursday, July 3, 2031 10:05 PM");
    expect(k, "time.Time", "12:05:09 AM");
    expect(k, "time.Hour", "12 AM");
    expect(k, "time.HourNumber", "00");
    expect(k, "time.Minute", "05");
    expect(k, "time.Second", "09");
    expect(k, "time.Day", "04");
    expect(k, "time.MonthNumber", "07");
    expect(k, "time.Month", "July");
    expect(k, "time.TimeZoneOffset", "+02:00");
    expect(k, "time.TimeZoneName", "CEST");
    /* across the change to winter time (26 October 2031) the wall clock
     * moves by whole days, as .NET's AddDays keeps the offset */
    expect_arg(k, "time.DaysAgo", NULL, "-120", "Saturday, 01 November, 2031");
    CHECK(sk_kernel_set_option(k, "now", "2031-07-04T10:00:00Z") == SK_OK); /* noon */
    expect(k, "time.Hour", "12 PM");
    expect(k, "time.Time", "12:00:00 PM");
    CHECK(sk_kernel_set_option(k, "now", "2031-12-31T23:30:00Z") == SK_OK);
    expect(k, "time.Date", "Thursday, 01 January, 2032");
    expect(k, "time.Year", "2032");
    expect(k, "time.TimeZoneOffset", "+01:00");
    expect(k, "time.TimeZoneName", "CET");
    sk_kernel_free(k);
    /* half-hour zones */
    set_tz("IST-5:30");
    k = new_kernel("2031-01-13T05:15:07Z");
    expect(k, "time.TimeZoneOffset", "+05:30");
    expect(k, "time.Now", "Monday, January 13, 2031 10:45 AM");
    sk_kernel_free(k);
}

/* The option now: Unix seconds or ISO 8601 with a zone; anything else is
 * refused with what to write; empty gives the system clock back. */
TEST(test_clock_option)
{
    set_tz("UTC0");
    sk_kernel *k = new_kernel(NULL);
    CHECK(sk_kernel_set_option(k, "now", "1926047707") == SK_OK);
    expect(k, "time.iso_date", "2031-01-13");
    expect(k, "time.Time", "05:15:07 AM");
    CHECK(sk_kernel_set_option(k, "now", "2031-01-12T21:15:07-08:00") == SK_OK);
    expect(k, "time.Time", "05:15:07 AM");
    CHECK(sk_kernel_set_option(k, "now", "2031-01-13 06:15+0100") == SK_OK);
    expect(k, "time.Time", "05:15:00 AM");
    CHECK(sk_kernel_set_option(k, "now", "2031-01-13T05:15:07z") == SK_OK);
    expect(k, "time.Second", "07");
    const char *bad[] = {"tomorrow", "2031-01-13T05:15:07", "2031-02-31T00:00:00Z",
                         "2031-13-01T00:00:00Z", "2031-01-13T05:15:07Zjunk", "12abc",
                         "2031-01-13T05:15:07+25:00"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_INT(sk_kernel_set_option(k, "now", bad[i]), SK_USAGE);
        CHECK_CONTAINS(sk_errmsg(k), "option now:");
        CHECK_CONTAINS(sk_errmsg(k), "ISO 8601 with a zone");
    }
    expect(k, "time.Second", "07"); /* a refused value changes nothing */
    CHECK(sk_kernel_set_option(k, "now", "") == SK_OK);
    long long before = (long long)time(NULL);
    long long got = kern_now(k);
    CHECK(got >= before && got <= (long long)time(NULL));
    sk_kernel_free(k);

    /* SKEIN_NOW sets it for every new kernel; a bad one fails the kernel */
    setenv("SKEIN_NOW", "2031-01-13T05:15:07Z", 1);
    k = new_kernel(NULL);
    expect(k, "time.Date", "Monday, 13 January, 2031");
    sk_kernel_free(k);
    setenv("SKEIN_NOW", "soon", 1);
    k = NULL;
    CHECK_INT(sk_kernel_new(&k), SK_USAGE);
    CHECK_CONTAINS(sk_errmsg(k), "SKEIN_NOW: \"soon\" is not an instant");
    sk_kernel_free(k);
    unsetenv("SKEIN_NOW");
}

static char *render(sk_kernel *k, const char *src, sk_status *st)
{
    sk_template *t = NULL;
    char *out = NULL;
    *st = sk_template_parse(k, src, strlen(src), "prompt.txt", &t);
    if (*st == SK_OK)
        *st = sk_render(k, t, NULL, 0, &out);
    sk_template_free(t);
    return out;
}

/* Real SK prompts call the time functions bare and in any case. */
TEST(test_bare_names_in_templates)
{
    set_tz("PST8PDT,M3.2.0,M11.1.0");
    sk_kernel *k = new_kernel("2031-01-13T05:15:07Z");
    sk_status st;
    char *out = render(k, "Today is {{date}} ({{time.Date}}), {{year}}-{{monthNumber}}-{{day}}; "
                          "{{TIME.dayOfWeek}} at {{time.time}} {{timeZoneName}}. "
                          "Three days ago: {{daysAgo '3'}}; last Friday: "
                          "{{time.dateMatchingLastDayName 'Friday'}}; {{days_ago days='1'}}.",
                       &st);
    CHECK_INT(st, SK_OK);
    CHECK_STR(out, "Today is Sunday, 12 January, 2031 (Sunday, 12 January, 2031), 2031-01-12; "
                   "Sunday at 09:15:07 PM PST. Three days ago: Thursday, 09 January, 2031; "
                   "last Friday: Friday, 10 January, 2031; Saturday, 11 January, 2031.");
    sk_free(out);
    /* a function of the caller's own skill comes before the built-in */
    CHECK(sk_kernel_add_semantic(k, "Mine", "Ask", "{{date}} | {{year}}", NULL) == SK_OK);
    sk_function *f = reg_find(k, "Mine.Ask");
    CHECK(reg_find_short(k, "date", "Mine") == reg_find(k, "time.Date"));
    CHECK(sk_kernel_add_semantic(k, "Mine", "Date", "x", NULL) == SK_OK);
    CHECK(reg_find_short(k, "date", "Mine") == reg_find(k, "Mine.Date"));
    /* from elsewhere, the skill loaded first (the built-in) */
    CHECK(reg_find_short(k, "date", "Other") == reg_find(k, "time.Date"));
    (void)f;
    sk_kernel_free(k);
}

/* A plan is the model's: a bare time name in it reaches time.* only when
 * the plan may call it. */
TEST(test_bare_names_hold_to_the_grant)
{
    set_tz("UTC0");
    sk_kernel *k = new_kernel("2031-01-13T05:15:07Z");
    const char *text = "1. year()\n";
    sk_plan *p = NULL;
    char *problems = NULL;
    CHECK(plan_parse(text, strlen(text), "p.plan", 0, &p, &problems) == SK_OK);
    sk_err *e = NULL;
    const char *only[] = {"Text.Upper"};
    CHECK(grant_new(k, "this plan", only, 1, &p->grant, &e) == SK_OK);
    CHECK_INT(plan_validate(k, p, NULL, &problems), SK_PLAN);
    CHECK_CONTAINS(problems, "p.plan:1:4: time.Year is not allowed here");
    free(problems);
    problems = NULL;
    grant_release(p->grant);
    const char *with_time[] = {"Text.Upper", "time.Year"};
    CHECK(grant_new(k, "this plan", with_time, 2, &p->grant, &e) == SK_OK);
    CHECK_INT(plan_validate(k, p, NULL, &problems), SK_OK);
    free(problems);
    plan_free(p);
    sk_kernel_free(k);
}

int main(void)
{
    RUN(test_pacific_evening);
    RUN(test_central_europe_summer);
    RUN(test_clock_option);
    RUN(test_bare_names_in_templates);
    RUN(test_bare_names_hold_to_the_grant);
    return tu_finish();
}
