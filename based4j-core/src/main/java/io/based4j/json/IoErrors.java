package io.based4j.json;

import java.io.EOFException;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.FileSystemLoopException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.NotLinkException;

/**
 * I/O errors in words, naming the file where the exception knows it ({@link FileSystemException#getFile()} and
 * {@link FileSystemException#getOtherFile()}) and never a Java class name: {@code "runs/x: permission denied"}.
 */
public final class IoErrors {
    private IoErrors() {
    }

    /** The whole message: the file or files concerned, then the reason. */
    public static String describe(IOException e) {
        if (e instanceof FileSystemException f && f.getFile() != null) {
            String files = f.getOtherFile() == null ? f.getFile() : f.getFile() + " -> " + f.getOtherFile();
            return files + ": " + reason(e);
        }
        String reason = reason(e);
        return reason.startsWith("I/O error") ? reason : "I/O error: " + reason;
    }

    /** What went wrong, without the file (for messages that name it already). */
    public static String reason(IOException e) {
        return switch (e) {
            case NoSuchFileException n -> "no such file or directory";
            case AccessDeniedException a -> "permission denied";
            case FileAlreadyExistsException a -> "already exists";
            case NotDirectoryException n -> "not a directory";
            case DirectoryNotEmptyException n -> "directory not empty";
            case FileSystemLoopException l -> "a loop of symbolic links";
            case NotLinkException l -> "not a symbolic link";
            case FileSystemException f -> f.getReason() == null || f.getReason().isBlank() ? "I/O error" : f.getReason();
            case CharacterCodingException c -> "not valid UTF-8 text";
            case EOFException eof -> "unexpected end of file" + (eof.getMessage() == null ? "" : " (" + eof.getMessage() + ")");
            default -> e.getMessage() == null || e.getMessage().isBlank() ? "I/O error" : e.getMessage();
        };
    }
}
