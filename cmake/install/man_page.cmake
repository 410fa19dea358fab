# cmake -DHELP2MAN=... -DPROGRAM=... -DNAME=... -DDESCRIPTION=... -DOUTPUT=... -P man_page.cmake
# One man page from PROGRAM --help and --version. For rbm_eval, the options of every
# subcommand (`rbm_eval SUB --help`, the subcommands read from `rbm_eval --help`) go in a
# SUBCOMMANDS section, so the page lists every option of the program.
get_filename_component(_dir "${OUTPUT}" DIRECTORY)
file(MAKE_DIRECTORY "${_dir}")
set(_include "${OUTPUT}.include")
set(_include_arg "")
if(NAME STREQUAL "rbm_eval")
  execute_process(COMMAND "${PROGRAM}" --help OUTPUT_VARIABLE _overview RESULT_VARIABLE _rc
                  ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} --help failed (${_rc}): ${_err}")
  endif()
  string(REGEX MATCHALL "\n  [^\n]*rbm_eval [a-z]+ " _subs "${_overview}")
  set(_text "")
  foreach(_s IN LISTS _subs)
    string(REGEX REPLACE "^.*rbm_eval ([a-z]+) $" "\\1" _s "${_s}")
    execute_process(COMMAND "${PROGRAM}" ${_s} --help OUTPUT_VARIABLE _help RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "${PROGRAM} ${_s} --help failed (${_rc})")
    endif()
    # troff: a backslash is \e; a line starting with . or ' needs \& before it
    string(REPLACE "\\" "\\e" _help "${_help}")
    string(REGEX REPLACE "\n([.'])" "\n\\\\&\\1" _help "\n${_help}")
    string(APPEND _text ".SS rbm_eval ${_s}\n.nf${_help}\n.fi\n")
  endforeach()
  file(WRITE "${_include}" "[SUBCOMMANDS]\n${_text}")
  set(_include_arg "--include=${_include}")
endif()
execute_process(
  COMMAND "${HELP2MAN}" --no-info --section=1 "--name=${DESCRIPTION}"
          ${_include_arg} "--output=${OUTPUT}.tmp" "${PROGRAM}"
  RESULT_VARIABLE _rc ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "help2man ${NAME} failed (${_rc}): ${_err}")
endif()
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
