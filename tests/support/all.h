/*
 * all.h -- every layer's internal header, for tests that reach inside the
 * library (they link the static library, where hidden symbols resolve).
 */
#ifndef SKEIN_TEST_ALL_H
#define SKEIN_TEST_ALL_H

#include "base/base.h"
#include "formats/formats.h"
#include "policy/policy.h"
#include "core/core.h"
#include "models/models.h"
#include "df/df.h"
#include "planner/planner.h"
#include "lua/klua.h"

#endif
