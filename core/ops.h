#pragma once
// The public functional op API. Every op checks its arguments once (rw::Error naming the op and
// the offending shapes, dtypes or devices), allocates its output, calls the device's backend and,
// when an input requires grad, records a node on the tape.
#include "autograd/tape.h"
#include "core/ops/elementwise.h"
#include "core/ops/indexing.h"
#include "core/ops/linalg.h"
#include "core/ops/nn_ops.h"
#include "core/ops/random.h"
#include "core/ops/reduce.h"
#include "core/ops/shape_ops.h"
#include "core/tensor.h"
