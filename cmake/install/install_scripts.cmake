# Included by `cmake --install` (see RbmInstall.cmake): writes the Slurm scripts with the
# installed bin folder filled in, and the modulefile with the real prefix, then installs
# them. Variables: RBM_SOURCE_DIR RBM_STAGE_DIR RBM_VERSION RBM_BINDIR RBM_MANDIR RBM_DATADIR.
foreach(_v RBM_BINDIR RBM_MANDIR RBM_DATADIR)
  if(IS_ABSOLUTE "${${_v}}")
    set(_${_v} "${${_v}}")
  else()
    set(_${_v} "${CMAKE_INSTALL_PREFIX}/${${_v}}")
  endif()
endforeach()
if(_RBM_BINDIR MATCHES "'")
  message(FATAL_ERROR "install prefix ${CMAKE_INSTALL_PREFIX}: a ' in the path is not supported")
endif()

# Slurm scripts: the line "rbm_installed_bin=" becomes the installed bin folder. (sbatch
# runs a copy of the script from its spool folder, so the script cannot find itself.)
set(_slurm "${RBM_STAGE_DIR}/slurm")
file(REMOVE_RECURSE "${_slurm}")
file(MAKE_DIRECTORY "${_slurm}")
file(GLOB _scripts "${RBM_SOURCE_DIR}/slurm/*")
foreach(_f IN LISTS _scripts)
  get_filename_component(_n "${_f}" NAME)
  file(READ "${_f}" _text)
  string(REGEX REPLACE "\nrbm_installed_bin=[^\n]*"
         "\nrbm_installed_bin='${_RBM_BINDIR}'   # written by cmake --install" _text "${_text}")
  file(WRITE "${_slurm}/${_n}" "${_text}")
endforeach()
file(GLOB _staged "${_slurm}/*")
file(INSTALL ${_staged} DESTINATION "${CMAKE_INSTALL_PREFIX}/${RBM_DATADIR}/rbm_dist/slurm"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                      WORLD_READ WORLD_EXECUTE)

# Modulefile (Tcl, so Lmod and Environment Modules both read it).
set(RBM_MODULE_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(RBM_MODULE_BINDIR "${_RBM_BINDIR}")
set(RBM_MODULE_MANDIR "${_RBM_MANDIR}")
set(RBM_MODULE_SLURMDIR "${_RBM_DATADIR}/rbm_dist/slurm")
configure_file("${RBM_SOURCE_DIR}/cmake/install/modulefile.tcl.in"
               "${RBM_STAGE_DIR}/modulefile/${RBM_VERSION}" @ONLY)
file(INSTALL "${RBM_STAGE_DIR}/modulefile/${RBM_VERSION}"
     DESTINATION "${CMAKE_INSTALL_PREFIX}/${RBM_DATADIR}/modulefiles/rbm_dist")
