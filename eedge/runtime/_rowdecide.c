/* The batch-1 cascade's hottest Python steps, compiled: the stage loop, the input's
 * finiteness check and int8 quantization, a float exit's decision from an estimate of
 * its score, and an int8 exit's fixed-point decision.
 *
 * Why: at batch 1 a small stage costs ONNX Runtime ~10 us, and the Python around it
 * (the loop, a row to a list, its maximum, ten exp calls, comparisons, the input
 * check) cost ~4-5 us per stage more. Here it is ~1 us. eedge.runtime.cascade_one
 * has the pure-Python twin of all of it (used when this module is not built: no
 * compiler at install, an SSH device without one, a copied source tree);
 * tests/runtime/test_rowdecide.py and test_fast_path.py check that the two agree.
 *
 * Exactness is cascade_one's contract: a float decision is taken here only when the
 * estimate is more than `margin` away from the threshold and the window's edge;
 * everything else (non-finite logits, maxima beyond +-600, scores near an edge)
 * returns None and Python decides on numpy's exact score. The estimate uses libm's
 * exp, as Python's math.exp does. int8 decisions are exact integer arithmetic, the
 * same as cascade_one's and the generated C runtime's.
 *
 * Built against the stable ABI (Python 3.11+), so one wheel serves every supported
 * Python. The buffers are numpy arrays; anything that is not a C-contiguous buffer of
 * the expected type and size is declined (None), never read past its end.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <string.h>
#include <time.h>

enum { MAX_SOFTMAX = 0, MARGIN = 1, GATE = 2 };
enum { SMALL_INPUT = 1024 };

/* A C-contiguous float32 buffer of `x`, or 0 (and no error set) when `x` is not one. */
static int float32_view(PyObject *x, Py_buffer *view) {
    if (PyObject_GetBuffer(x, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* sum_squares(x) -> float | None: the sum of the squares of a float32 array in double
 * precision (inf or nan iff a value is not finite: no float32 square, nor a sum of
 * SMALL_INPUT of them, overflows a double); None if x is not a C-contiguous float32
 * buffer, or has more than SMALL_INPUT values (numpy's vectorized BLAS dot is faster
 * there: 4 vs 17 us on a 96x96x3 input; here 0.3 vs 0.8-1.4 us on 64 values). */
static PyObject *sum_squares(PyObject *module, PyObject *x) {
    (void)module;
    Py_buffer view;
    if (!float32_view(x, &view)) {
        Py_RETURN_NONE;
    }
    const float *values = (const float *)view.buf;
    Py_ssize_t count = view.len / 4, i = 0;
    if (count > SMALL_INPUT) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    /* eight independent sums: one running sum waits for every add (~4 cycles each,
     * 55 us on a 96x96x3 input); eight keep the adder busy */
    double lanes[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (; i + 8 <= count; i += 8) {
        for (int lane = 0; lane < 8; lane++) {
            double v = values[i + lane];
            lanes[lane] += v * v;
        }
    }
    double total = 0.0;
    for (int lane = 0; lane < 8; lane++) {
        total += lanes[lane];
    }
    for (; i < count; i++) {
        double v = values[i];
        total += v * v;
    }
    PyBuffer_Release(&view);
    return PyFloat_FromDouble(total);
}

/* quantize(x, out, scale, zero_point, channels) -> True | None
 *
 * TFLite's QUANTIZE of a float32 input into `out` (int8, C-contiguous, as many values):
 * round(x / scale) + zero_point, the quotient in float32, rounding half away from zero
 * (trunc(q + copysign(0.5, q)) in double, exact for every float32 q), saturated to
 * int8; an input of `channels` planes (NCHW / NCL) is written channels-last. The
 * caller has checked x finite; None (out partly written) for a NaN, a buffer that does
 * not fit, or a compiler whose float arithmetic is not plain float32. */
static PyObject *quantize(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "quantize takes 5 arguments");
        return NULL;
    }
    double scale_value = PyFloat_AsDouble(args[2]);
    long zero_point = PyLong_AsLong(args[3]);
    Py_ssize_t channels = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
    Py_RETURN_NONE;  /* x / scale would not be QUANTIZE's float32 quotient */
#endif
    Py_buffer in, out;
    if (!float32_view(args[0], &in)) {
        Py_RETURN_NONE;
    }
    if (PyObject_GetBuffer(args[1], &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
        != 0) {
        PyErr_Clear();
        PyBuffer_Release(&in);
        Py_RETURN_NONE;
    }
    Py_ssize_t count = in.len / 4;
    int fits = out.itemsize == 1 && out.format != NULL && strcmp(out.format, "b") == 0 &&
               out.len == count && channels >= 1 && count % channels == 0 &&
               zero_point >= -128 && zero_point <= 127;
    const float *x = (const float *)in.buf;
    signed char *q = (signed char *)out.buf;
    const float scale = (float)scale_value;
    Py_ssize_t spatial = fits ? count / channels : 0;
    for (Py_ssize_t c = 0; fits && c < channels; c++) {
        for (Py_ssize_t i = 0; i < spatial; i++) {
            float quotient = x[c * spatial + i] / scale;
            if (isnan(quotient)) {
                fits = 0;
                break;
            }
            double y = (double)quotient;
            y = trunc(y + copysign(0.5, y)) + (double)zero_point;
            y = y < -128.0 ? -128.0 : (y > 127.0 ? 127.0 : y);
            q[i * channels + c] = (signed char)y;
        }
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    if (!fits) {
        Py_RETURN_NONE;
    }
    Py_RETURN_TRUE;
}

/* An optional float argument: None -> NAN (no threshold / no window). */
static int optional_double(PyObject *value, double *out) {
    if (value == Py_None) {
        *out = NAN;
        return 1;
    }
    *out = PyFloat_AsDouble(value);
    return !(*out == -1.0 && PyErr_Occurred());
}

/* What decide_row concluded. */
typedef enum { GOES_ON, LEAVES, REJECTED, UNDECIDED } Outcome;

/* A float exit's decision for one row of logits (cascade_one's _decide_float on its
 * estimate): GOES_ON, LEAVES (at class *index), REJECTED (leaves, below the window), or
 * UNDECIDED when only the exact score may decide. threshold and low are NAN for None. */
static Outcome decide_row(const float *row, Py_ssize_t classes, Py_ssize_t gate,
                          int criterion, double threshold, double low, double margin,
                          int final, Py_ssize_t *index) {
    double top = row[0];
    int finite = 1;
    *index = 0;
    for (Py_ssize_t i = 0; i < classes; i++) {
        double v = row[i];
        finite &= isfinite(v) != 0;
        if (v > top) {
            top = v;
            *index = i;
        }
    }
    double gate_value = gate >= 0 ? (double)row[gate] : 0.0;
    finite &= isfinite(gate_value) != 0;
    if (!finite) {
        return UNDECIDED;
    }
    int has_low = !isnan(low), has_threshold = !isnan(threshold);
    if (final && !has_low) {
        return LEAVES;
    }
    if (top < -600.0 || top > 600.0) {
        return UNDECIDED;
    }
    double estimate;
    if (criterion == GATE) {
        double e = exp(-fabs(gate_value));
        estimate = gate_value >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    } else {
        double total = 0.0, first = -1.0, second = -1.0;
        for (Py_ssize_t i = 0; i < classes; i++) {
            double e = exp((double)row[i]);
            total += e;
            if (e > first) {
                second = first;
                first = e;
            } else if (e > second) {
                second = e;
            }
        }
        if (criterion == MAX_SOFTMAX) {
            estimate = exp(top) / total;
        } else {
            estimate = classes < 2 ? 1.0 : (first - second) / total;
        }
    }
    if (has_low && estimate + margin < low) {
        return REJECTED;
    }
    if (!has_low || estimate - margin >= low) {
        if (final || (has_threshold && estimate - margin >= threshold)) {
            return LEAVES;
        }
        if (!has_threshold || estimate + margin < threshold) {
            return GOES_ON;
        }
    }
    return UNDECIDED;
}

/* decide_row on a tensor object: UNDECIDED (no error) when it is not a C-contiguous
 * float32 buffer holding the row; -1 with an error set if the arguments are bad. */
static int decide_tensor(PyObject *tensor, Py_ssize_t classes, Py_ssize_t gate,
                         int criterion, PyObject *threshold_obj, PyObject *low_obj,
                         double margin, int final, Py_ssize_t *index) {
    double threshold, low;
    if (!optional_double(threshold_obj, &threshold) || !optional_double(low_obj, &low)) {
        return -1;
    }
    if (classes < 1 || criterion < MAX_SOFTMAX || criterion > GATE ||
        (criterion == GATE && gate < 0) || (gate >= 0 && gate != classes)) {
        return UNDECIDED;
    }
    Py_buffer view;
    if (!float32_view(tensor, &view)) {
        return UNDECIDED;
    }
    Outcome outcome = UNDECIDED;
    if (view.len / 4 >= (gate >= 0 ? gate + 1 : classes)) {
        outcome = decide_row((const float *)view.buf, classes, gate, criterion, threshold,
                             low, margin, final, index);
    }
    PyBuffer_Release(&view);
    return (int)outcome;
}

/* (class index, rejected) for a row that leaves, False, or None (Python decides). */
static PyObject *outcome_object(int outcome, Py_ssize_t index) {
    switch (outcome) {
    case GOES_ON:
        Py_RETURN_FALSE;
    case LEAVES:
    case REJECTED:
        return Py_BuildValue("(nO)", index, outcome == REJECTED ? Py_True : Py_False);
    default:
        Py_RETURN_NONE;
    }
}

/* float_decision(row, classes, gate, criterion, threshold, low, margin, final)
 *   -> False (goes on) | (class index, rejected) (leaves here) | None (Python decides)
 *
 * row: the exit tensor (one row of float32 logits; when gate >= 0 the gate logit follows
 * the classes at column gate == classes, and only criterion 2 scores it); criterion:
 * 0 max_softmax, 1 margin, 2 gate; threshold, low: float or None; final: the exit that
 * always decides. */
static PyObject *float_decision(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "float_decision takes 8 arguments");
        return NULL;
    }
    Py_ssize_t classes = PyLong_AsSsize_t(args[1]);
    Py_ssize_t gate = PyLong_AsSsize_t(args[2]);
    long criterion = PyLong_AsLong(args[3]);
    double margin = PyFloat_AsDouble(args[6]);
    int final = PyObject_IsTrue(args[7]);
    if (PyErr_Occurred() || final < 0) {
        return NULL;
    }
    Py_ssize_t index = 0;
    int outcome = decide_tensor(args[0], classes, gate, (int)criterion, args[4], args[5],
                                margin, final, &index);
    return outcome < 0 ? NULL : outcome_object(outcome, index);
}

/* The criterion's code, or -1 for one only Python scores (entropy, unknown names). */
static int criterion_code(PyObject *name) {
    if (!PyUnicode_Check(name)) {
        return -1;
    }
    if (PyUnicode_CompareWithASCIIString(name, "max_softmax") == 0) {
        return MAX_SOFTMAX;
    }
    if (PyUnicode_CompareWithASCIIString(name, "margin") == 0) {
        return MARGIN;
    }
    if (PyUnicode_CompareWithASCIIString(name, "gate") == 0) {
        return GATE;
    }
    return -1;
}

static long long monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);  /* time.perf_counter's clock on Linux */
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* Run stage `stage` (a tuple: run, input names, output names, exit, compiled args):
 * its inputs from `store`, its outputs into it, its time appended to `seconds`.
 * Returns the outputs (a new reference) or NULL with an error set. */
static PyObject *run_stage(PyObject *stage, PyObject *store, PyObject *seconds) {
    PyObject *run = PyTuple_GetItem(stage, 0), *inputs = PyTuple_GetItem(stage, 1);
    PyObject *outputs = PyTuple_GetItem(stage, 2);
    if (run == NULL || inputs == NULL || outputs == NULL) {
        return NULL;
    }
    Py_ssize_t n_inputs = PyTuple_Size(inputs);
    PyObject *feed = PyList_New(n_inputs);
    if (feed == NULL) {
        return NULL;
    }
    for (Py_ssize_t j = 0; j < n_inputs; j++) {
        PyObject *name = PyTuple_GetItem(inputs, j);
        PyObject *value = name == NULL ? NULL : PyDict_GetItemWithError(store, name);
        if (value == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetObject(PyExc_KeyError, name);
            }
            Py_DECREF(feed);
            return NULL;
        }
        Py_INCREF(value);
        PyList_SetItem(feed, j, value);
    }
    long long start = monotonic_ns();
    PyObject *values = PyObject_CallFunctionObjArgs(run, feed, NULL);
    long long stop = monotonic_ns();
    Py_DECREF(feed);
    if (values == NULL) {
        return NULL;
    }
    PyObject *elapsed = PyFloat_FromDouble((double)(stop - start) * 1e-9);
    int failed = elapsed == NULL || PyList_Append(seconds, elapsed) != 0;
    Py_XDECREF(elapsed);
    Py_ssize_t n_values = failed ? 0 : PySequence_Size(values);
    Py_ssize_t n_outputs = PyTuple_Size(outputs);
    failed |= n_values < 0;
    for (Py_ssize_t j = 0; !failed && j < n_outputs && j < n_values; j++) {  /* zip() */
        PyObject *value = PySequence_GetItem(values, j);
        failed = value == NULL || PyDict_SetItem(store, PyTuple_GetItem(outputs, j), value);
        Py_XDECREF(value);
    }
    if (failed) {
        Py_DECREF(values);
        return NULL;
    }
    return values;
}

/* A C-contiguous buffer of 256 int64 (an ExpTable's exps or parts), or NULL. */
static const long long *table_256(PyObject *array, Py_buffer *view) {
    if (PyObject_GetBuffer(array, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return NULL;
    }
    if (view->itemsize != 8 || view->len != 256 * 8 || view->format == NULL ||
        (strcmp(view->format, "l") != 0 && strcmp(view->format, "q") != 0)) {
        PyBuffer_Release(view);
        return NULL;
    }
    return (const long long *)view->buf;
}

/* An int8 exit's decision (cascade_one's _decide_int8): TFLite's int8 softmax of the
 * top one or two classes from the exit's exp table, compared with the integer limits.
 * `args` = (classes, gate column or -1, final, exps, parts, row_scale, limits):
 * row_scale(total) -> (reciprocal, exponent) and limits(threshold, low, criterion) ->
 * (limit, low limit or None) are cascade_one's (cached) Python functions. Returns an
 * Outcome, or -1 with an error set. */
static int int8_decision(PyObject *tensor, PyObject *args, int code, PyObject *threshold,
                         PyObject *low, Py_ssize_t *index) {
    Py_ssize_t classes = PyLong_AsSsize_t(PyTuple_GetItem(args, 0));
    Py_ssize_t gate = PyLong_AsSsize_t(PyTuple_GetItem(args, 1));
    int final = PyObject_IsTrue(PyTuple_GetItem(args, 2));
    if (PyErr_Occurred() || final < 0) {
        return -1;
    }
    Py_buffer view, exps_view, parts_view;
    if (PyObject_GetBuffer(tensor, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return UNDECIDED;
    }
    int readable = view.itemsize == 1 && view.format != NULL && strcmp(view.format, "b") == 0
                   && classes >= 1 && view.len >= (gate >= 0 ? gate + 1 : classes) &&
                   (gate < 0 || gate == classes);
    if (!readable) {
        PyBuffer_Release(&view);
        return UNDECIDED;
    }
    const signed char *row = (const signed char *)view.buf;
    int top = row[0];
    *index = 0;
    for (Py_ssize_t i = 1; i < classes; i++) {
        if (row[i] > top) {
            top = row[i];
            *index = i;
        }
    }
    if (final && low == Py_None) {  /* decides whatever its score */
        PyBuffer_Release(&view);
        return LEAVES;
    }
    long long score = 0;
    if (code == GATE) {
        score = row[gate];
    } else {
        const long long *exps = table_256(PyTuple_GetItem(args, 3), &exps_view);
        const long long *parts = exps == NULL ? NULL : table_256(PyTuple_GetItem(args, 4),
                                                                  &parts_view);
        if (parts == NULL) {
            if (exps != NULL) {
                PyBuffer_Release(&exps_view);
            }
            PyBuffer_Release(&view);
            return UNDECIDED;
        }
        long long total = 0;
        int first = 256, second = 256;  /* the two smallest distances from the top */
        for (Py_ssize_t i = 0; i < classes; i++) {
            int distance = top - row[i];
            total += parts[distance];
            if (distance < first) {
                second = first;
                first = distance;
            } else if (distance < second) {
                second = distance;
            }
        }
        long long first_exp = exps[first], second_exp = second < 256 ? exps[second] : 0;
        PyBuffer_Release(&exps_view);
        PyBuffer_Release(&parts_view);
        PyObject *total_obj = PyLong_FromLongLong(total);
        PyObject *scaled = total_obj == NULL ? NULL :
            PyObject_CallFunctionObjArgs(PyTuple_GetItem(args, 5), total_obj, NULL);
        Py_XDECREF(total_obj);
        long long reciprocal = 0, exponent = 0;
        if (scaled != NULL && (!PyTuple_Check(scaled) || PyTuple_Size(scaled) != 2)) {
            PyErr_SetString(PyExc_TypeError, "row_scale must return (reciprocal, exponent)");
            Py_CLEAR(scaled);
        }
        if (scaled != NULL) {
            reciprocal = PyLong_AsLongLong(PyTuple_GetItem(scaled, 0));
            exponent = PyLong_AsLongLong(PyTuple_GetItem(scaled, 1));
            Py_DECREF(scaled);
        }
        if (scaled == NULL || PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return -1;
        }
        if (reciprocal < 0 || reciprocal > 0x7FFFFFFFLL || exponent < 1 || exponent > 62) {
            PyBuffer_Release(&view);
            return UNDECIDED;
        }
        /* q of a class: TFLite's rounding multiply and shift, all values >= 0 */
        long long half = 1LL << (exponent - 1);
        long long q_first = ((((reciprocal * first_exp + (1LL << 30)) >> 31) + half) >>
                             exponent) - 128;
        long long q_second = ((((reciprocal * second_exp + (1LL << 30)) >> 31) + half) >>
                              exponent) - 128;
        q_first = q_first > 127 ? 127 : q_first;
        q_second = q_second > 127 ? 127 : q_second;
        if (code == MAX_SOFTMAX) {
            score = q_first;
        } else {
            score = classes > 1 ? q_first - q_second : q_first + 128;
        }
    }
    PyBuffer_Release(&view);
    static const char *const names[] = {"max_softmax", "margin", "gate"};
    PyObject *limits = PyObject_CallFunction(PyTuple_GetItem(args, 6), "OOs", threshold, low,
                                             names[code]);
    if (limits == NULL) {
        return -1;
    }
    if (!PyTuple_Check(limits) || PyTuple_Size(limits) != 2) {
        Py_DECREF(limits);
        PyErr_SetString(PyExc_TypeError, "limits must return (limit, low limit or None)");
        return -1;
    }
    long long limit = PyLong_AsLongLong(PyTuple_GetItem(limits, 0));
    PyObject *low_obj = PyTuple_GetItem(limits, 1);
    int has_low = low_obj != NULL && low_obj != Py_None;
    long long low_limit = has_low ? PyLong_AsLongLong(low_obj) : 0;
    Py_DECREF(limits);
    if (PyErr_Occurred()) {
        return -1;
    }
    int rejected = has_low && score < low_limit;
    if (!(score >= limit || rejected)) {
        return GOES_ON;
    }
    return rejected ? REJECTED : LEAVES;
}

/* An exit's compiled decision after its stage ran: an Outcome, or -1 with an error set.
 * `args` is the stage's float arguments (classes, gate column or -1, margin, final), its
 * int8 arguments (see int8_decision) or None. */
static int stage_decision(PyObject *values, PyObject *args, long k, PyObject *criteria,
                          PyObject *thresholds, PyObject *window_low, int early_exit,
                          Py_ssize_t *index) {
    if (args == Py_None) {
        return UNDECIDED;
    }
    if (!PyTuple_Check(args) || (PyTuple_Size(args) != 4 && PyTuple_Size(args) != 7)) {
        PyErr_SetString(PyExc_TypeError, "an exit's arguments are a tuple of 4 or 7");
        return -1;
    }
    int int8 = PyTuple_Size(args) == 7;
    Py_ssize_t classes = PyLong_AsSsize_t(PyTuple_GetItem(args, 0));
    Py_ssize_t gate = PyLong_AsSsize_t(PyTuple_GetItem(args, 1));
    double margin = int8 ? 0.0 : PyFloat_AsDouble(PyTuple_GetItem(args, 2));
    int final = PyObject_IsTrue(PyTuple_GetItem(args, int8 ? 2 : 3));
    if (PyErr_Occurred() || final < 0) {
        return -1;
    }
    PyObject *name = PySequence_GetItem(criteria, k);
    if (name == NULL) {
        return -1;
    }
    int code = criterion_code(name);
    Py_DECREF(name);
    if (code < 0) {
        return UNDECIDED;
    }
    if (code == GATE && gate < 0) {  /* an exit without a gate column: decide's rule */
        code = MAX_SOFTMAX;
    }
    PyObject *threshold = early_exit ? PySequence_GetItem(thresholds, k) : Py_NewRef(Py_None);
    PyObject *low = early_exit || final ? PySequence_GetItem(window_low, k)
                                        : Py_NewRef(Py_None);
    PyObject *tensor = PySequence_GetItem(values, 0);
    int outcome = -1;
    if (threshold != NULL && low != NULL && tensor != NULL) {
        outcome = int8 ? int8_decision(tensor, args, code, threshold, low, index)
                       : decide_tensor(tensor, classes, gate, code, threshold, low, margin,
                                       final, index);
    }
    Py_XDECREF(threshold);
    Py_XDECREF(low);
    Py_XDECREF(tensor);
    return outcome;
}

/* run_stages(stages, start, store, seconds, criteria, thresholds, window_low, early_exit)
 *   -> (position, decided)
 *
 * cascade_one's stage loop for one sample from stage `start` on, while it needs no
 * Python: each stage runs (see run_stage) and its exit, if any, is decided by
 * decide_row. Stops at the first exit the row leaves at (position, (class index,
 * rejected)), at the first exit only Python can decide (position, None; the stage has
 * run and its outputs are in the store), or after the last stage (len(stages), None). */
static PyObject *run_stages(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "run_stages takes 8 arguments");
        return NULL;
    }
    PyObject *stages = args[0], *store = args[2], *seconds = args[3];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    int early_exit = PyObject_IsTrue(args[7]);
    Py_ssize_t count = PySequence_Size(stages);
    if (PyErr_Occurred() || early_exit < 0 || count < 0) {
        return NULL;
    }
    if (!PyDict_Check(store) || !PyList_Check(seconds)) {
        PyErr_SetString(PyExc_TypeError, "run_stages needs a dict store and a seconds list");
        return NULL;
    }
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "run_stages starts at a stage index >= 0");
        return NULL;
    }
    for (Py_ssize_t i = start; i < count; i++) {
        PyObject *stage = PySequence_GetItem(stages, i);
        if (stage == NULL) {
            return NULL;
        }
        if (!PyTuple_Check(stage) || PyTuple_Size(stage) != 5 ||
            !PyTuple_Check(PyTuple_GetItem(stage, 1)) ||
            !PyTuple_Check(PyTuple_GetItem(stage, 2))) {
            Py_DECREF(stage);
            PyErr_SetString(PyExc_TypeError, "a stage is (run, input names tuple, output "
                                             "names tuple, exit, arguments)");
            return NULL;
        }
        PyObject *values = run_stage(stage, store, seconds);
        long k = values == NULL ? -1 : PyLong_AsLong(PyTuple_GetItem(stage, 3));
        int outcome = GOES_ON;
        Py_ssize_t index = 0;
        if (values != NULL && !PyErr_Occurred() && k >= 0) {
            outcome = stage_decision(values, PyTuple_GetItem(stage, 4), k, args[4], args[5],
                                     args[6], early_exit, &index);
        }
        Py_DECREF(stage);
        Py_XDECREF(values);
        if (values == NULL || outcome < 0 || PyErr_Occurred()) {
            return NULL;
        }
        if (outcome == UNDECIDED) {
            return Py_BuildValue("(nO)", i, Py_None);
        }
        if (outcome != GOES_ON) {
            return Py_BuildValue("(n(nO))", i, index, outcome == REJECTED ? Py_True : Py_False);
        }
    }
    return Py_BuildValue("(nO)", count, Py_None);
}

static PyMethodDef methods[] = {
    {"sum_squares", (PyCFunction)(void (*)(void))sum_squares, METH_O,
     "Sum of squares of a float32 array in double precision (None: not float32)."},
    {"float_decision", (PyCFunction)(void (*)(void))float_decision, METH_FASTCALL,
     "A float exit's decision from an estimate of its score (None: Python decides)."},
    {"quantize", (PyCFunction)(void (*)(void))quantize, METH_FASTCALL,
     "TFLite QUANTIZE of a float32 input into an int8 buffer, channels-last."},
    {"run_stages", (PyCFunction)(void (*)(void))run_stages, METH_FASTCALL,
     "One sample's stages and compiled exit decisions, until Python must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rowdecide",
    "Compiled batch-1 input check and float exit decision (see eedge.runtime.cascade_one).",
    0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rowdecide(void) { return PyModule_Create(&module); }
