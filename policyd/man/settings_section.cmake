# cmake -DRATEGUARDD=... -DIN=rateguard.conf.5.in -DOUT=rateguard.conf.5 -P settings_section.cmake
# Writes OUT: IN with its line `.\" SETTINGS-TABLE` replaced by `rateguardd --settings-doc=roff` (the SETTINGS
# section body, from the settings table in common/config), so rateguard.conf(5) cannot drift from the code.
execute_process(COMMAND ${RATEGUARDD} --settings-doc=roff
  RESULT_VARIABLE rc OUTPUT_VARIABLE settings ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR settings STREQUAL "")
  message(FATAL_ERROR "rateguard.conf(5): `${RATEGUARDD} --settings-doc=roff` failed (${rc}): ${err}")
endif()
file(READ ${IN} page)
set(marker ".\\\" SETTINGS-TABLE\n")
string(FIND "${page}" "${marker}" at)
if(at LESS 0)
  message(FATAL_ERROR "${IN}: no SETTINGS-TABLE line")
endif()
string(REPLACE "${marker}" "${settings}" page "${page}")
file(WRITE ${OUT} "${page}")
