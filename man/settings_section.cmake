# cmake -DRATEGUARDD=... -DIN=rateguard.conf.5.in -DOUT=rateguard.conf.5 -P settings_section.cmake
# Writes OUT: IN with its line `.\" SETTINGS-TABLE` replaced by `rateguardd --settings-doc=roff` (the SETTINGS section
# body, from the settings table in common/config). A rateguardd without that option (before the settings
# table landed) gets a placeholder that says so, and the build warns.
execute_process(COMMAND ${RATEGUARDD} --settings-doc=roff
  RESULT_VARIABLE rc OUTPUT_VARIABLE settings ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR settings STREQUAL "")
  message(WARNING "rateguard.conf(5): `rateguardd --settings-doc=roff` failed (${rc}: ${err}); "
                  "the SETTINGS section is a placeholder")
  set(settings [[
.B This page was built without its settings table:
the rateguardd it was built with cannot print it
.RB ( "rateguardd \-\-settings\-doc=roff" ).
.B "rateguardd \-\-help"
lists every setting with its default and meaning.
]])
endif()
file(READ ${IN} page)
set(marker ".\\\" SETTINGS-TABLE\n")
string(FIND "${page}" "${marker}" at)
if(at LESS 0)
  message(FATAL_ERROR "${IN}: no SETTINGS-TABLE line")
endif()
string(REPLACE "${marker}" "${settings}" page "${page}")
file(WRITE ${OUT} "${page}")
