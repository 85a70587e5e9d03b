#ifndef SKYLARK_CSQLITE_SHIM_H
#define SKYLARK_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
