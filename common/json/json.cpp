// Boost.JSON compiled into rg_common once (header-only mode): every binary that uses boost::json links this
// object through the library, so no other translation unit may include <boost/json/src.hpp>.
#include <boost/json/src.hpp>
