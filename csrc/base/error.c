/*
 * error.c - names and texts of the error codes, and names of the pool's
 * events, each from its one X-macro list.
 */
#include "base.h"

const char *mp_strerror(int code) {
    switch (code) {
#define MP_ERROR_TEXT(name, value, text) \
    case -(value):                       \
        return text;
        MP_ERROR_LIST(MP_ERROR_TEXT)
#undef MP_ERROR_TEXT
    default:
        return "unknown error code";
    }
}

const char *mp_error_name(int code) {
    switch (code) {
#define MP_ERROR_NAME(name, value, text) \
    case -(value):                       \
        return #name;
        MP_ERROR_LIST(MP_ERROR_NAME)
#undef MP_ERROR_NAME
    default:
        return "MP_UNKNOWN";
    }
}

const char *mp_event_name(int kind) {
    switch (kind) {
#define MP_EVENT_NAME(name, value, text) \
    case (value):                         \
        return text;
        MP_EVENT_LIST(MP_EVENT_NAME)
#undef MP_EVENT_NAME
    default:
        return "unknown";
    }
}
