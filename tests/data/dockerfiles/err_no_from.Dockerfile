# nothing before FROM but comments and ARGs
ARG X=1
RUN echo hi
