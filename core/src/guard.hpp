// guard.hpp - the one way the library stops C++ exceptions at its extern "C" boundary.
//
//     extern "C" int sl_thing(...) { return seclink::detail::guard([&] { return ...; }); }
//
// std::bad_alloc (and std::length_error, a request no allocator can meet) becomes SL_ENOMEM,
// anything else SL_EINTERNAL; a body that returns normally keeps its own code. Every exported
// function whose body can throw (it allocates a std::string, a vector, a unique_ptr with new, or
// calls something that may) goes through here, and so does any function declared noexcept that
// allocates: an exception leaving a noexcept function ends the process.
#pragma once

#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "seclink/seclink.h"

namespace seclink::detail {

template <class F>
int guard(F &&body) noexcept {
    static_assert(std::is_convertible_v<std::invoke_result_t<F &>, int>, "a guarded body returns an sl_err code");
    try {
        return std::forward<F>(body)();
    } catch (const std::bad_alloc &) {
        return SL_ENOMEM;
    } catch (const std::length_error &) {
        return SL_ENOMEM;
    } catch (...) {
        return SL_EINTERNAL;
    }
}

}  // namespace seclink::detail
