#include "rbm/errors.hpp"
// Everything in errors.hpp is inline; this file keeps the library layout one
// header : one source.
